// Sampling from a GPT, with or without the KV cache.
//   with the cache:  the prompt is run once, then each new token is one position of work per layer
//   without:         every new token reruns the whole sequence (what the cache saves)
// Both give the same tokens for the same seed: the cache changes the cost, not the result.
// Past the model's context the window slides: the last context/2 tokens are kept and re-read (both modes alike,
// so they stay identical), which is how a 64-byte model writes a page.
#pragma once
#include <cstdint>
#include <vector>

#include "models/transformer.h"

namespace qkvlab {

struct SampleOptions {
  int64_t max_new_tokens = 200;
  double temperature = 1.0;  // 0 = greedy (ties go to the lowest token id)
  int64_t top_k = 0;         // > 0: sample among the k most likely tokens only
  bool use_cache = true;
  uint64_t seed = 0;
};

struct SampleResult {
  std::vector<int64_t> tokens;  // the new tokens only
  double seconds = 0.0;         // wall time of the generation loop (prompt included)
  int64_t cache_bytes = 0;      // KV cache held at the end (0 without the cache)
  int64_t window_slides = 0;    // times the context window was cut back to its last half
};

// prompt: token ids (at least one, at most the model's context).
SampleResult sample(GPT& model, const std::vector<int64_t>& prompt, const SampleOptions& opts);

// Picks the next token from one row of logits.
int64_t pick_token(const std::vector<double>& logits, double temperature, int64_t top_k, Generator& gen);

}  // namespace qkvlab
