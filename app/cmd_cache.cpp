// qkvlab cache: parameter counts and KV-cache bytes of every variant of the paper's LM study (paper Table 7).
//
//   KV cache bytes per token = layers x (cached tensors: 2, or 1 when V is K) x KV heads x head dim x bytes
//
// Counted in closed form (models/transformer.h), so the 1.2B preset needs no memory.
#include <nlohmann/json.hpp>

#include "app/common.h"
#include "models/transformer.h"

namespace qkvlab::app {

namespace {
struct CacheArgs {
  CommonFlags common;
  std::string preset = "300M";
  int64_t context = 0;
  int bytes = 2;
};

// 80.000 -> "80", 2.500 -> "2.5", 96.875 -> "96.875"
std::string trimmed(double v) {
  std::string s = fixed(v, 3);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::string kb(double bytes) { return trimmed(bytes / 1024.0) + " KB"; }

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) b /= 1024.0, ++u;
  return fixed(b, b < 10 ? 2 : 1) + " " + units[u];
}

void run(const CacheArgs& a) {
  apply_common_flags(a.common);
  ModelConfig base;
  try {
    base = paper_lm_preset(a.preset);
  } catch (const Error& e) {
    fail("cache: ", e.what());
  }
  const int64_t context = a.context > 0 ? a.context : base.context;
  check(a.bytes == 1 || a.bytes == 2 || a.bytes == 4 || a.bytes == 8, "cache: --bytes must be 1, 2, 4 or 8, got ",
        a.bytes);
  nlohmann::ordered_json out;
  out["preset"] = a.preset;
  out["layers"] = base.n_layers, out["d_model"] = base.d_model, out["heads"] = base.n_heads;
  out["ffn"] = base.ffn, out["vocab_size"] = base.vocab_size, out["context"] = context;
  out["bytes_per_element"] = a.bytes;
  std::vector<std::vector<std::string>> rows;
  int64_t qkv_bytes = 0;
  for (const VariantSpec& v : variant_set("paper-lm", base.n_heads)) {
    ModelConfig c = base;
    c.variant = v;
    c.resolve();
    const int64_t per_token = kv_bytes_per_token(c, a.bytes);
    if (v.id() == "qkv") qkv_bytes = per_token;
    const double reduction = qkv_bytes ? 100.0 * (1.0 - double(per_token) / double(qkv_bytes)) : 0.0;
    const int64_t params = gpt_parameter_count(c), attn = attention_parameter_count(c);
    rows.push_back({v.id(), v.paper_name(), with_commas(params), with_commas(attn), std::to_string(c.kv_heads),
                    kb(double(per_token)), human_bytes(double(per_token) * double(context)),
                    trimmed(reduction) + " %"});
    out["variants"].push_back({{"variant", v.id()},
                               {"paper_name", v.paper_name()},
                               {"parameters", params},
                               {"attention_parameters_per_layer", attn},
                               {"kv_heads", c.kv_heads},
                               {"cached_tensors", v.cached_tensors()},
                               {"kv_bytes_per_token", per_token},
                               {"kv_bytes_at_context", per_token * context},
                               {"reduction_percent", reduction}});
  }
  if (a.common.json) {
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  std::printf("KV cache and parameters, preset %s: %lld layers, d_model %lld, %lld heads, FFN %lld, vocabulary %lld, "
              "context %lld, %d bytes per element\n\n",
              a.preset.c_str(), (long long)base.n_layers, (long long)base.d_model, (long long)base.n_heads,
              (long long)base.ffn, (long long)base.vocab_size, (long long)context, a.bytes);
  std::printf("%s", markdown_table({"variant", "paper name", "parameters", "attention params / layer", "KV heads",
                                    "KV cache / token", "KV cache at context", "reduction vs QKV"},
                                   rows)
                        .c_str());
}
}  // namespace

void register_cache(CLI::App& app) {
  auto args = std::make_shared<CacheArgs>();
  CLI::App* cmd = app.add_subcommand(
      "cache", "Parameter counts and KV-cache bytes of every variant of the paper's LM study (paper Table 7)");
  cmd->add_option("--preset", args->preset, "paper configuration: 300M (20 layers, d 1024, 16 heads) or 1.2B "
                                            "(22 layers, d 2048, 32 heads)")
      ->default_val("300M");
  cmd->add_option("--context", args->context, "tokens held in the cache for the 'at context' column (default: 2048)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  cmd->add_option("--bytes", args->bytes, "bytes per cached element (2 = bf16 as in the paper, 4 = float32)")
      ->default_val(2);
  add_common_flags(cmd, args->common);
  cmd->callback([args] { run(*args); });
}

}  // namespace qkvlab::app
