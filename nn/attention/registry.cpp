#include "nn/attention/registry.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace qkvlab {

namespace {
template <class Variant>
std::unique_ptr<Attention> make(const AttentionConfig& cfg, Generator& gen) {
  return std::make_unique<Variant>(cfg, gen);
}

// The table: every fact about a variant is written here once (docs/DESIGN.md, "The attention variants").
// A new variant is a class in variants.h and one row here.
std::vector<VariantRow>& rows() {
  static std::vector<VariantRow> table{
    // id      paper    projects q is k  v is k  GQA-G id, paper; MQA id, paper        class
    {"qkv",    "QKV",   "q k v", false, false, {"gqa:", "GQA-", "mqa", "MQA"},          make<QKVAttention>},
    {"kv",     "Q-K=V", "q k",   false, true,  {"kv-gqa:", "Q-GQA-", "kv-mqa", "Q-MQA"}, make<SharedKVAttention>},
    {"qk",     "Q=K-V", "k v",   true,  false, {},                                      make<SharedQKAttention>},
    {"single", "Q=K=V", "k",     true,  true,  {},                                      make<SingleProjectionAttention>},
  };
  return table;
}

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

// "valid: qkv, kv, qk, single, gqa:G, mqa, kv-gqa:G, kv-mqa (each may end in +), or the paper's names QKV, ...,
// (Q=K-V)+, (Q=K=V)+": the ids, then the paper's names; the paper writes (X)+ for the rows whose q is k, the
// symmetric scores its bias repairs.
void add_name(std::string& list, const std::string& name) { list += (list.empty() ? "" : ", ") + name; }

std::string valid_names() {
  std::string papers;
  for (const VariantRow& r : rows()) add_name(papers, r.paper_name);
  for (const VariantRow& r : rows())
    if (r.shares_heads()) add_name(papers, std::string(r.sharing.gqa_paper) + "G"), add_name(papers, r.sharing.mqa_paper);
  for (const VariantRow& r : rows())
    if (r.q_is_k) add_name(papers, std::string("(").append(r.paper_name).append(")+"));
  return "valid: " + variant_ids() + " (each may end in +), or the paper's names " + papers;
}

// The names a row answers to (ids and the paper's names; the grouped forms as prefixes before G).
std::vector<std::string> names_of(const VariantRow& r) {
  std::vector<std::string> out{r.id, r.paper_name};
  if (r.shares_heads())
    for (const char* n : {r.sharing.gqa_id, r.sharing.gqa_paper, r.sharing.mqa_id, r.sharing.mqa_paper})
      out.push_back(n);
  return out;
}
}  // namespace

bool VariantRow::has(char projection) const { return std::strchr(projects, projection) != nullptr; }

const std::vector<VariantRow>& variant_table() { return rows(); }

void add_variant(const VariantRow& row) {
  check(row.id && row.paper_name && row.projects && row.make, "add_variant: a row needs an id, a paper name, its "
        "projections and a constructor");
  check(!row.shares_heads() || (row.sharing.gqa_paper && row.sharing.mqa_id && row.sharing.mqa_paper),
        "add_variant: ", row.id, ": give all four head-sharing names or none");
  for (const VariantRow& r : rows())
    for (const std::string& a : names_of(r))
      for (const std::string& b : names_of(row))
        check(lower(a) != lower(b), "add_variant: ", row.id, ": the name '", b, "' is taken by ", r.id);
  rows().push_back(row);
}

void remove_variant(const std::string& id) {
  auto& t = rows();
  t.erase(std::remove_if(t.begin(), t.end(), [&](const VariantRow& r) { return id == r.id; }), t.end());
}

const VariantRow& VariantSpec::row() const {
  for (const VariantRow& r : rows())
    if (scheme == r.id) return r;
  fail("unknown variant '", scheme, "'; ", valid_names());
}

// The head-sharing form when kv_heads says so and the row has one; a row without (q is k) keeps its own name.
std::string VariantSpec::id() const {
  const VariantRow& r = row();
  std::string base = r.id;
  if (kv_heads > 0 && r.shares_heads())
    base = kv_heads == 1 ? r.sharing.mqa_id : r.sharing.gqa_id + std::to_string(kv_heads);
  return pos_bias ? base + "+" : base;
}

std::string VariantSpec::paper_name() const {
  const VariantRow& r = row();
  std::string base = r.paper_name;
  if (kv_heads > 0 && r.shares_heads())
    base = kv_heads == 1 ? r.sharing.mqa_paper : r.sharing.gqa_paper + std::to_string(kv_heads);
  return pos_bias ? "(" + base + ")+" : base;
}

int64_t VariantSpec::cached_tensors() const { return row().v_is_k ? 1 : 2; }

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
  // Ids match in any case, the paper's names of the schemes exactly, the head-sharing forms in any case.
  const std::string l = lower(s);
  for (const VariantRow& r : rows()) {
    spec.scheme = r.id;
    if (l == lower(r.id) || s == r.paper_name) return spec;
    if (!r.shares_heads()) continue;
    if (l == lower(r.sharing.mqa_id) || l == lower(r.sharing.mqa_paper)) {
      spec.kv_heads = 1;
      return spec;
    }
    int64_t g = 0;
    for (const std::string& prefix : {lower(r.sharing.gqa_id), lower(r.sharing.gqa_paper)})
      if (l.rfind(prefix, 0) == 0 && parse_count(l.substr(prefix.size()), g)) {
        spec.kv_heads = g;
        return spec;
      }
  }
  fail("unknown variant '", name, "'; ", valid_names());
}

std::vector<VariantSpec> variant_set(const std::string& set, int64_t n_heads) {
  auto names = [](std::initializer_list<std::string> l) {
    std::vector<VariantSpec> out;
    for (const std::string& n : l) out.push_back(parse_variant(n));
    return out;
  };
  std::vector<VariantSpec> synthetic = names({"qkv", "qk", "qk+", "kv", "single", "single+"});
  auto lm = [&] {
    check(n_heads % 4 == 0 && n_heads >= 8, "variant set paper-lm: needs heads divisible by 4 and at least 8 (so "
          "that GQA-G with G = heads/4 lies between QKV and MQA), got ", n_heads);
    const std::string g = std::to_string(n_heads / 4);
    return names({"qkv", "kv", "qk", "single", "gqa:" + g, "mqa", "kv-gqa:" + g, "kv-mqa"});
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
  const VariantRow& row = spec.row();
  return row.make(resolve_config(spec, cfg), gen);
}

int64_t attention_parameters(const VariantSpec& spec, const AttentionConfig& cfg) {
  const VariantRow& r = spec.row();
  const int64_t d = cfg.d_model, kvd = cfg.kv() * cfg.head_dim();
  const int64_t q = d * d + d, kv = d * kvd + kvd;  // Linear d->d and d->Hkv*D, with biases
  int64_t n = q;                                     // the output projection o
  if (r.has('q')) n += q;
  if (r.has('k')) n += kv;
  if (r.has('v')) n += kv;
  if (cfg.pe_channels > 0) n += cfg.pe_channels + 1;  // w and b of the (X)+ bias
  return n;
}

std::string variant_ids() {
  std::string ids;
  for (const VariantRow& r : rows()) add_name(ids, r.id);
  for (const VariantRow& r : rows())
    if (r.shares_heads()) add_name(ids, std::string(r.sharing.gqa_id) + "G"), add_name(ids, r.sharing.mqa_id);
  return ids;
}

}  // namespace qkvlab
