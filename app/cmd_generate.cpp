// qkvlab generate: sample text from an LM checkpoint, with the KV cache (default) or recomputing everything.
#include <nlohmann/json.hpp>

#include "app/model_flags.h"
#include "models/data.h"
#include "models/generate.h"

namespace qkvlab::app {

namespace {
struct GenerateArgs {
  CommonFlags common;
  std::string ckpt, prompt = "\n";
  int64_t tokens = 200, top_k = 0;
  double temperature = 0.8;
  bool no_cache = false;
};

void run(const GenerateArgs& a) {
  apply_common_flags(a.common);
  auto model = load_model(a.ckpt);
  GPT* gpt = dynamic_cast<GPT*>(model.get());
  check(gpt != nullptr, "generate: ", a.ckpt, " is a ", model->config().task, " model; generate needs an LM (--task lm)");
  check(a.tokens >= 0, "generate: --tokens must be >= 0, got ", a.tokens);
  check(a.top_k >= 0, "generate: --top-k must be >= 0, got ", a.top_k);
  ByteTokenizer tok = ByteTokenizer::from_vocab(model->config().vocab);
  std::vector<int64_t> prompt = tok.encode(a.prompt);
  SampleOptions o;
  o.max_new_tokens = a.tokens;
  o.temperature = a.temperature;
  o.top_k = a.top_k;
  o.use_cache = !a.no_cache;
  o.seed = a.common.seed;
  SampleResult r = a.tokens > 0 ? sample(*gpt, prompt, o) : SampleResult{};
  std::string text = tok.decode(r.tokens);
  double tps = r.seconds > 0 ? double(r.tokens.size()) / r.seconds : 0.0;
  if (a.common.json) {
    nlohmann::ordered_json j{{"prompt", a.prompt},         {"text", text},
                             {"tokens", r.tokens.size()}, {"tokens_per_s", tps},
                             {"cache", o.use_cache},      {"cache_bytes", r.cache_bytes},
                             {"window_slides", r.window_slides}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::printf("%s%s\n", a.prompt.c_str(), text.c_str());
  std::fprintf(stderr, "%zu tokens in %.3f s (%.0f tokens/s), KV cache %s, %lld bytes; context window slid %lld times\n",
               r.tokens.size(), r.seconds, tps, o.use_cache ? "on" : "off", (long long)r.cache_bytes,
               (long long)r.window_slides);
}
}  // namespace

void register_generate(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Sample text from an LM checkpoint (with the KV cache by default)");
  cmd->add_option("--ckpt", args->ckpt, "run directory or model.safetensors of an LM")->required();
  cmd->add_option("--prompt", args->prompt, "text to continue (every byte must be in the model's vocabulary)")
      ->default_val("\n");
  cmd->add_option("--tokens", args->tokens, "bytes to generate (past the context the window slides to its last half)")
      ->default_val(200);
  cmd->add_option("--temperature", args->temperature, "sampling temperature; 0 = greedy (ties: lowest id)")
      ->default_val(0.8);
  cmd->add_option("--top-k", args->top_k, "sample among the k most likely bytes only (0 = all)")->default_val(0);
  cmd->add_flag("--no-cache", args->no_cache, "recompute the whole sequence for every token (no KV cache)");
  add_common_flags(cmd, args->common);
  cmd->callback([args] { run(*args); });
}

}  // namespace qkvlab::app
