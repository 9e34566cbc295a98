#include "nn/attention/registry.h"

#include <algorithm>
#include <cctype>

namespace qkvlab {

namespace {
const char* kValidNames =
    "valid: qkv, kv, qk, single, gqa:G, mqa, kv-gqa:G, kv-mqa (each may end in +), or the paper's names QKV, "
    "Q-K=V, Q=K-V, Q=K=V, GQA-G, MQA, Q-GQA-G, Q-MQA, (Q=K-V)+, (Q=K=V)+";

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// <cctype> functions take an unsigned char value: a plain char above 0x7f would be negative (undefined behaviour).
bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }
bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

bool parse_count(const std::string& s, int64_t& out) {
  if (s.empty() || s.size() > 6 || !std::all_of(s.begin(), s.end(), is_digit)) return false;
  out = std::stoll(s);
  return out >= 1;
}
}  // namespace

std::string VariantSpec::id() const {
  std::string base;
  switch (kind) {
    case Projection::QKV: base = kv_heads == 0 ? "qkv" : kv_heads == 1 ? "mqa" : "gqa:" + std::to_string(kv_heads); break;
    case Projection::SharedKV:
      base = kv_heads == 0 ? "kv" : kv_heads == 1 ? "kv-mqa" : "kv-gqa:" + std::to_string(kv_heads);
      break;
    case Projection::SharedQK: base = "qk"; break;
    case Projection::Single: base = "single"; break;
  }
  return pos_bias ? base + "+" : base;
}

std::string VariantSpec::paper_name() const {
  std::string base;
  switch (kind) {
    case Projection::QKV: base = kv_heads == 0 ? "QKV" : kv_heads == 1 ? "MQA" : "GQA-" + std::to_string(kv_heads); break;
    case Projection::SharedKV:
      base = kv_heads == 0 ? "Q-K=V" : kv_heads == 1 ? "Q-MQA" : "Q-GQA-" + std::to_string(kv_heads);
      break;
    case Projection::SharedQK: base = "Q=K-V"; break;
    case Projection::Single: base = "Q=K=V"; break;
  }
  return pos_bias ? "(" + base + ")+" : base;
}

int64_t VariantSpec::cached_tensors() const {
  return kind == Projection::SharedKV || kind == Projection::Single ? 1 : 2;
}

VariantSpec parse_variant(const std::string& name) {
  std::string s = name;
  s.erase(std::remove_if(s.begin(), s.end(), is_space), s.end());
  VariantSpec spec;
  // "(X)+" and "X+" both mean: with the positional score bias.
  if (s.size() > 1 && s.back() == '+') {
    spec.pos_bias = true;
    s.pop_back();
    if (s.size() > 2 && s.front() == '(' && s.back() == ')') s = s.substr(1, s.size() - 2);
  }
  std::string l = lower(s);
  int64_t g = 0;
  if (l == "qkv") spec.kind = Projection::QKV;
  else if (l == "kv" || s == "Q-K=V") spec.kind = Projection::SharedKV;
  else if (l == "qk" || s == "Q=K-V") spec.kind = Projection::SharedQK;
  else if (l == "single" || s == "Q=K=V") spec.kind = Projection::Single;
  else if (l == "mqa") spec.kv_heads = 1;
  else if (l == "kv-mqa" || l == "q-mqa") spec = {Projection::SharedKV, 1, spec.pos_bias};
  else if (l.rfind("gqa:", 0) == 0 && parse_count(l.substr(4), g)) spec.kv_heads = g;
  else if (l.rfind("gqa-", 0) == 0 && parse_count(l.substr(4), g)) spec.kv_heads = g;
  else if (l.rfind("kv-gqa:", 0) == 0 && parse_count(l.substr(7), g)) spec = {Projection::SharedKV, g, spec.pos_bias};
  else if (l.rfind("q-gqa-", 0) == 0 && parse_count(l.substr(6), g)) spec = {Projection::SharedKV, g, spec.pos_bias};
  else fail("unknown variant '", name, "'; ", kValidNames);
  return spec;
}

std::vector<VariantSpec> variant_set(const std::string& set, int64_t n_heads) {
  auto names = [](std::initializer_list<const char*> l) {
    std::vector<VariantSpec> out;
    for (const char* n : l) out.push_back(parse_variant(n));
    return out;
  };
  std::vector<VariantSpec> synthetic = names({"qkv", "qk", "qk+", "kv", "single", "single+"});
  auto lm = [&] {
    check(n_heads % 4 == 0 && n_heads >= 8, "variant set paper-lm: needs heads divisible by 4 and at least 8 (so "
          "that GQA-G with G = heads/4 lies between QKV and MQA), got ", n_heads);
    int64_t g = n_heads / 4;
    std::vector<VariantSpec> out = names({"qkv", "kv", "qk", "single"});
    out.push_back({Projection::QKV, g, false});
    out.push_back({Projection::QKV, 1, false});
    out.push_back({Projection::SharedKV, g, false});
    out.push_back({Projection::SharedKV, 1, false});
    return out;
  };
  if (set == "paper-synthetic") return synthetic;
  if (set == "paper-lm") return lm();
  if (set == "all") {
    std::vector<VariantSpec> out = synthetic;
    for (auto& v : lm())
      if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
    return out;
  }
  std::vector<VariantSpec> out;
  size_t start = 0;
  while (start <= set.size()) {
    size_t comma = set.find(',', start);
    std::string item = set.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    check(!item.empty(), "variants: empty name in '", set, "' (sets: paper-synthetic, paper-lm, all)");
    out.push_back(parse_variant(item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

AttentionConfig resolve_config(const VariantSpec& spec, AttentionConfig cfg) {
  cfg.kv_heads = spec.kv_heads == 0 ? cfg.n_heads : spec.kv_heads;
  if (!spec.pos_bias) cfg.pe_channels = 0;
  else if (cfg.pe_channels == 0) cfg.pe_channels = 10;
  check(cfg.n_heads > 0 && cfg.d_model % cfg.n_heads == 0, spec.id(), ": ", cfg.n_heads,
        " heads do not divide d_model ", cfg.d_model);
  check(cfg.n_heads % cfg.kv_heads == 0, spec.id(), ": ", cfg.kv_heads, " KV heads do not divide ", cfg.n_heads,
        " heads");
  return cfg;
}

std::unique_ptr<Attention> make_attention(const VariantSpec& spec, AttentionConfig cfg, Generator& gen) {
  cfg = resolve_config(spec, cfg);
  switch (spec.kind) {
    case Projection::QKV: return std::make_unique<QKVAttention>(cfg, gen);
    case Projection::SharedKV: return std::make_unique<SharedKVAttention>(cfg, gen);
    case Projection::SharedQK: return std::make_unique<SharedQKAttention>(cfg, gen);
    case Projection::Single: return std::make_unique<SingleProjectionAttention>(cfg, gen);
  }
  fail("make_attention: unknown projection kind");
}

}  // namespace qkvlab
