// A small GPT config and a batch of random tokens, for tests that need a real training step but no corpus.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/config.h"
#include "nn/attention/registry.h"
#include "tensor/array.h"
#include "tensor/random.h"

namespace qkvlab::testing {

inline ModelConfig lm_config(const std::string& variant, int64_t d_model, int64_t heads, int64_t layers,
                             int64_t context, int64_t vocab) {
  ModelConfig cfg;
  cfg.task = "lm";
  cfg.variant = parse_variant(variant);
  cfg.d_model = d_model;
  cfg.n_heads = heads;
  cfg.n_layers = layers;
  cfg.context = context;
  cfg.vocab_size = vocab;
  cfg.resolve();
  return cfg;
}

// Inputs and targets (batch, context) of uniform random token ids, drawn in the order x0, y0, x1, y1, ...
inline std::pair<Array, Array> random_lm_batch(int64_t batch, int64_t context, int64_t vocab, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> ids, next;
  for (int64_t i = 0; i < batch * context; ++i) ids.push_back(g.randint(0, vocab)), next.push_back(g.randint(0, vocab));
  return {Array::from_vector(ids, {batch, context}), Array::from_vector(next, {batch, context})};
}

}  // namespace qkvlab::testing
