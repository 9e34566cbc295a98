// bench decode: generation tokens/s with and without the KV cache (models/generate.h), and the cache's bytes per
// token against the formula layers x cached tensors x KV heads x head dim x 4 bytes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/config.h"

namespace qkvlab::bench {

struct DecodeRow {
  ModelConfig cfg;
  std::vector<double> tokens_per_s_cache, tokens_per_s_no_cache;  // one per repeat
  int64_t cache_bytes_per_token = 0, formula_bytes_per_token = 0;
  bool matches_formula = false;  // the cache holds exactly formula bytes for every position
};

// A GPT preset (vocabulary 65, the given context and variant), batch 1: one prompt token, then greedy generation
// until the sequence fills the context, with and without the cache, `repeats` times. Fails when the two give
// different tokens.
DecodeRow measure_decode(const std::string& preset, const std::string& variant, int64_t context, int repeats);

}  // namespace qkvlab::bench
