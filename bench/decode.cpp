#include "bench/decode.h"

#include "models/generate.h"
#include "models/transformer.h"

namespace qkvlab::bench {

DecodeRow measure_decode(const std::string& preset, const std::string& v, int64_t context, int repeats) {
  DecodeRow row;
  ModelConfig& cfg = row.cfg;
  cfg = gpt_preset(preset);
  cfg.vocab_size = 65;
  cfg.context = context;
  cfg.variant = parse_variant(v);
  cfg.resolve();
  GPT model(cfg, 1234);
  // One prompt token, then generate until the sequence fills the context: every token attends to all before it.
  const std::vector<int64_t> prompt{1};
  SampleOptions o;
  o.max_new_tokens = context - 1;
  o.temperature = 0.0;
  int64_t cache_bytes = 0;
  for (int r = 0; r < repeats; ++r) {
    o.use_cache = true;
    SampleResult c = sample(model, prompt, o);
    row.tokens_per_s_cache.push_back(double(c.tokens.size()) / c.seconds);
    cache_bytes = c.cache_bytes;
    o.use_cache = false;
    SampleResult n = sample(model, prompt, o);
    row.tokens_per_s_no_cache.push_back(double(n.tokens.size()) / n.seconds);
    check(n.tokens == c.tokens, "bench decode: ", v, " gives different tokens with and without the cache");
  }
  // The cache holds every position fed to the model: the prompt and all new tokens but the last.
  const int64_t positions = int64_t(prompt.size()) + o.max_new_tokens - 1;
  const int64_t per_token = cache_bytes / positions;
  const int64_t formula = kv_bytes_per_token(cfg, sizeof(float));
  row.cache_bytes_per_token = per_token;
  row.formula_bytes_per_token = formula;
  row.matches_formula = per_token * positions == cache_bytes && per_token == formula;
  return row;
}

}  // namespace qkvlab::bench
