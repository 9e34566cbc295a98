// The table of variants (nn/attention/registry.h): every fact the library states about a variant comes from its
// row, and a new variant is one class and one row.
//
// How the second claim is shown: the table is a function-local vector, so a test can append a row with
// add_variant() and take it out again (a guard below) without editing the library. The toy row then goes
// through everything a variant meets (parsing, both names, sets, the unknown-name message, building, the parameter
// count, the KV cache and its bytes, a checkpoint) with no other change. The first test checks each derived fact
// against the built class for every row, so a row that lied about its class would fail there.
#include <catch2/catch.hpp>

#include "models/checkpoint.h"
#include "models/transformer.h"
#include "nn/attention/registry.h"
#include "tests/test_util.h"

using namespace qkvlab;

namespace {
// A toy variant: the query is x itself (no q projection); keys come from one Linear with Hkv heads and the values
// are the keys. Paper-style name X-K=V; with head sharing X-GQA-G / X-MQA.
struct UnprojectedQueryAttention : Attention {
  Linear k;
  UnprojectedQueryAttention(const AttentionConfig& cfg, Generator& gen)
      : Attention(cfg, gen), k(cfg.d_model, cfg.kv() * cfg.head_dim(), gen) {
    register_module("k", k);
  }
  Projections project(const Tensor& x) override {
    Tensor key = k(x);        // (B,T,Hkv*D)
    return {x, key, key};     // q = x: (B,T,C) = (B,T,H*D)
  }
  std::string type_name() const override { return "UnprojectedQueryAttention"; }
};

template <class A>
std::unique_ptr<Attention> make_toy(const AttentionConfig& cfg, Generator& gen) {
  return std::make_unique<A>(cfg, gen);
}

// The one row the toy needs; removed again when the test ends (also when a REQUIRE stops it).
struct ToyRow {
  ToyRow() {
    add_variant({"xk", "X-K=V", "k", false, true, {"x-gqa:", "X-GQA-", "x-mqa", "X-MQA"},
                 make_toy<UnprojectedQueryAttention>});
  }
  ~ToyRow() { remove_variant("xk"); }
};

bool has_param(const Module& m, const std::string& name) {
  for (auto& [n, t] : m.named_parameters())
    if (n == name) return true;
  return false;
}

// A GPT's parameter count, the layer its row builds, and its KV cache after decoding `tokens` one at a time.
struct Built {
  int64_t params = 0, closed_form = 0, cache_bytes = 0, formula_bytes = 0;
  std::string type;
};
Built build_and_decode(const std::string& variant, int64_t tokens) {
  ModelConfig cfg;
  cfg.task = "lm";
  cfg.variant = parse_variant(variant);
  cfg.d_model = 16, cfg.n_heads = 4, cfg.n_layers = 2, cfg.context = 12, cfg.vocab_size = 11;
  GPT model(cfg, 3);
  Built b;
  b.params = model.num_parameters();
  b.closed_form = gpt_parameter_count(cfg);
  b.type = model.blocks[0]->attn->type_name();
  NoGradGuard ng;
  KVCache cache;
  for (int64_t t = 0; t < tokens; ++t) model.forward(Array::from_vector(std::vector<int64_t>{t % 11}, {1, 1}), &cache);
  b.cache_bytes = cache.bytes();
  b.formula_bytes = kv_bytes_per_token(cfg, 4) * tokens;
  return b;
}
}  // namespace

TEST_CASE("variant table: the paper's four rows", "[nn][attention]") {
  const auto& t = variant_table();
  REQUIRE(t.size() >= 4);
  struct Expected {
    const char* id;
    const char* paper;
    bool q, k, v, q_is_k, v_is_k, shares;
    const char* type;
  };
  const Expected want[] = {
      {"qkv", "QKV", true, true, true, false, false, true, "QKVAttention"},
      {"kv", "Q-K=V", true, true, false, false, true, true, "SharedKVAttention"},
      {"qk", "Q=K-V", false, true, true, true, false, false, "SharedQKAttention"},
      {"single", "Q=K=V", false, true, false, true, true, false, "SingleProjectionAttention"},
  };
  for (size_t i = 0; i < 4; ++i) {
    INFO(want[i].id);
    CHECK(std::string(t[i].id) == want[i].id);
    CHECK(std::string(t[i].paper_name) == want[i].paper);
    CHECK(t[i].has('q') == want[i].q);
    CHECK(t[i].has('k') == want[i].k);
    CHECK(t[i].has('v') == want[i].v);
    CHECK(t[i].q_is_k == want[i].q_is_k);
    CHECK(t[i].v_is_k == want[i].v_is_k);
    CHECK(t[i].shares_heads() == want[i].shares);
    CHECK(build_and_decode(want[i].id, 1).type == want[i].type);
  }
}

TEST_CASE("variant table: every row's derived facts agree with the class it builds", "[nn][attention]") {
  ToyRow toy;  // the toy row is checked like the others
  for (const VariantRow& row : variant_table()) {
    INFO(row.id);
    std::vector<std::string> forms{row.id, std::string(row.id) + "+"};
    if (row.shares_heads()) forms.push_back(std::string(row.sharing.gqa_id) + "2"), forms.push_back(row.sharing.mqa_id);
    for (const std::string& form : forms) {
      INFO(form);
      VariantSpec spec = parse_variant(form);
      CHECK(spec.scheme == row.id);
      CHECK(parse_variant(spec.id()) == spec);  // both names lead back to the same spec
      CHECK(parse_variant(spec.paper_name()) == spec);
      AttentionConfig cfg;
      cfg.d_model = 16, cfg.n_heads = 4, cfg.context = 8;
      Generator gen(1);
      auto attn = make_attention(spec, cfg, gen);
      // The projections the row names are the Linear layers the class owns.
      for (char p : {'q', 'k', 'v'}) CHECK(has_param(*attn, std::string(1, p) + ".weight") == row.has(p));
      CHECK(attention_parameters(spec, attn->config()) == attn->num_parameters());
      // q is k and v is k: the very same Tensor comes back from project().
      Tensor x(Array::normal({1, 3, 16}, gen));
      Projections pr = attn->project(x);
      CHECK((pr.q.impl() == pr.k.impl()) == row.q_is_k);
      CHECK((pr.v.impl() == pr.k.impl()) == row.v_is_k);
      // The cache the base keeps holds what cached_tensors() says (it looks only at the Tensors).
      const Built b = build_and_decode(form, 5);
      CHECK(b.params == b.closed_form);
      CHECK(b.cache_bytes == b.formula_bytes);
    }
    // A row whose q is k has no head-sharing form: q needs all H heads, so k does too.
    if (row.q_is_k) CHECK_FALSE(row.shares_heads());
  }
}

TEST_CASE("variant table: a new variant is one class and one row", "[nn][attention]") {
  CHECK_THROWS_WITH(parse_variant("xk"), Catch::StartsWith("unknown variant 'xk'"));
  {
    ToyRow toy;
    // Names, both ways, with head sharing and the (X)+ bias.
    CHECK(parse_variant("xk").paper_name() == "X-K=V");
    CHECK(parse_variant("X-K=V").id() == "xk");
    CHECK(parse_variant("x-gqa:2").paper_name() == "X-GQA-2");
    CHECK(parse_variant("X-GQA-2").id() == "x-gqa:2");
    CHECK(parse_variant("X-MQA").id() == "x-mqa");
    CHECK(parse_variant("(X-K=V)+").id() == "xk+");
    CHECK(parse_variant("xk").cached_tensors() == 1);
    CHECK(variant_set("qkv,xk,x-mqa+", 4).size() == 3);
    CHECK_THROWS_WITH(parse_variant("nope"), Catch::Contains("valid: qkv, kv, qk, single, xk, gqa:G, mqa, kv-gqa:G, "
                                                             "kv-mqa, x-gqa:G, x-mqa (each may end in +)"));
    // The class, the closed-form counts and the cache, by hand for d 16, 4 heads (D 4), 2 layers:
    // attention = o (16x16 + 16) + k (16 x Hkv*4 + Hkv*4); cache = 2 layers x 1 tensor x Hkv x 4 x 4 bytes.
    for (auto [name, hkv] : {std::pair<const char*, int64_t>{"xk", 4}, {"x-gqa:2", 2}, {"x-mqa", 1}}) {
      INFO(name);
      ModelConfig cfg;
      cfg.task = "lm";
      cfg.variant = parse_variant(name);
      cfg.d_model = 16, cfg.n_heads = 4, cfg.n_layers = 2, cfg.context = 12, cfg.vocab_size = 11;
      CHECK(attention_parameter_count(cfg) == 272 + 16 * hkv * 4 + hkv * 4);
      CHECK(kv_bytes_per_token(cfg, 4) == 2 * 1 * hkv * 4 * 4);
      const Built b = build_and_decode(name, 6);
      CHECK(b.type == "UnprojectedQueryAttention");
      CHECK(b.params == b.closed_form);
      CHECK(b.cache_bytes == 6 * 2 * 1 * hkv * 4 * 4);
    }
    // A checkpoint: the config stores the id, and loading parses it back through the table.
    testing::TempDir dir("toy_variant");
    ModelConfig cfg;
    cfg.task = "lm";
    cfg.variant = parse_variant("(X-GQA-2)+");
    cfg.d_model = 16, cfg.n_heads = 4, cfg.n_layers = 1, cfg.context = 8, cfg.vocab_size = 11;
    GPT model(cfg, 9);
    save_model(dir.file("model.safetensors"), model);
    auto loaded = load_model(dir.file("model.safetensors"));
    CHECK(loaded->config().variant == cfg.variant);
    CHECK(loaded->config().variant.id() == "x-gqa:2+");
    CHECK(loaded->num_parameters() == model.num_parameters());
    // A row may not take a name another row answers to.
    CHECK_THROWS_WITH(add_variant({"xk2", "qkv", "k", false, true, {}, make_toy<UnprojectedQueryAttention>}),
                      Catch::Contains("the name 'qkv' is taken by qkv"));
    CHECK_THROWS_WITH(add_variant({"XK", "Y", "k", false, true, {}, make_toy<UnprojectedQueryAttention>}),
                      Catch::Contains("taken by xk"));
  }
  // Out of the table again: the name is unknown, and the message no longer lists it.
  CHECK_THROWS_WITH(parse_variant("xk"), Catch::StartsWith("unknown variant 'xk'"));
  CHECK_THROWS_WITH(parse_variant("nope"), Catch::Contains("valid: qkv, kv, qk, single, gqa:G, mqa, kv-gqa:G, kv-mqa "
                                                           "(each may end in +), or the paper's names QKV, Q-K=V, "
                                                           "Q=K-V, Q=K=V, GQA-G, MQA, Q-GQA-G, Q-MQA, (Q=K-V)+, "
                                                           "(Q=K=V)+"));
}
