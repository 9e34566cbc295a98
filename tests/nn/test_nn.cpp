// Modules, optimizers and schedules.
#include <catch2/catch.hpp>
#include <cmath>

#include "models/transformer.h"
#include "nn/layers.h"
#include "nn/optim.h"

using namespace qkvlab;

namespace {
struct Stack : Module {  // Embedding -> LayerNorm -> Linear -> Linear(no bias)
  Embedding emb;
  LayerNorm ln;
  Linear a, b;
  Stack(Generator& g) : emb(11, 6, g), ln(6), a(6, 5, g), b(5, 3, g, false) {
    register_module("emb", emb);
    register_module("ln", ln);
    register_module("a", a);
    register_module("b", b);
  }
};
}  // namespace

TEST_CASE("parameter counts equal the closed form", "[nn]") {
  Generator g(1);
  Stack s(g);
  CHECK(s.num_parameters() == 11 * 6 + 2 * 6 + (6 * 5 + 5) + 5 * 3);
  auto names = s.named_parameters();
  REQUIRE(names.size() == 6);
  CHECK(names[0].first == "emb.weight");
  CHECK(names[1].first == "ln.weight");
  CHECK(names[3].first == "a.weight");
  CHECK(names[5].first == "b.weight");
  CHECK(s.a.weight.shape() == Shape{5, 6});  // [out, in] as PyTorch
  CHECK(s.str().find("Linear(in=6, out=5)") != std::string::npos);
}

TEST_CASE("GPT parameter count: closed form == built model, for every variant", "[nn][models]") {
  for (const char* v : {"qkv", "kv", "qk", "single", "gqa:2", "mqa", "kv-gqa:2", "kv-mqa", "qk+", "single+"}) {
    INFO(v);
    ModelConfig c;
    c.task = "lm";
    c.variant = parse_variant(v);
    c.d_model = 16, c.n_heads = 4, c.n_layers = 2, c.context = 8, c.vocab_size = 13;
    GPT m(c, 1);
    CHECK(m.num_parameters() == gpt_parameter_count(c));
    // names follow docs/DESIGN.md section 6
    auto params = m.named_parameters();
    auto has = [&](const std::string& n) {
      for (auto& [k, t] : params)
        if (k == n) return true;
      return false;
    };
    CHECK(has("tok_emb.weight"));
    CHECK(has("blocks.1.attn.o.bias"));
    CHECK(has("blocks.0.mlp.fc.weight"));
    CHECK(has("ln_f.bias"));
    VariantSpec s = parse_variant(v);
    CHECK(has("blocks.0.attn.k.weight"));
    CHECK(has("blocks.0.attn.q.weight") == (s.scheme == "qkv" || s.scheme == "kv"));
    CHECK(has("blocks.0.attn.v.weight") == (s.scheme == "qkv" || s.scheme == "qk"));
    CHECK(has("blocks.0.attn.pe.weight") == s.pos_bias);
  }
}

TEST_CASE("state_dict round trip is bit-exact; mismatches are refused by name", "[nn]") {
  Generator g1(1), g2(2);
  Stack a(g1), b(g2);
  b.load_state_dict(a.state_dict());
  auto sa = a.state_dict(), sb = b.state_dict();
  for (size_t i = 0; i < sa.size(); ++i) CHECK(max_abs_diff(sa[i].second, sb[i].second) == 0.0);

  NamedArrays bad = a.state_dict();
  bad[3].second = Array::zeros({5, 7});
  CHECK_THROWS_WITH(b.load_state_dict(bad), "load_state_dict: a.weight: expected shape (5,6), got (5,7)");
  NamedArrays missing = a.state_dict();
  missing.pop_back();
  CHECK_THROWS_WITH(b.load_state_dict(missing), Catch::Contains("missing tensor b.weight"));
  NamedArrays extra = a.state_dict();
  extra.emplace_back("c.weight", Array::zeros({1}));
  CHECK_THROWS_WITH(b.load_state_dict(extra), Catch::Contains("unexpected tensor c.weight"));
}

TEST_CASE("AdamW matches a hand-computed two-step update", "[nn][optim]") {
  // One parameter p = [1, -2] (a matrix 1x2, so it is in the decay group), gradients g1 = [0.5, -1], g2 = [0.1, 0.2]
  Tensor p(Array::from_vector(std::vector<double>{1.0, -2.0}, {1, 2}), true);
  ParamGroup grp{"decay", {"p"}, {p}, 0.1};
  AdamW opt({grp}, 0.01, 0.9, 0.999, 1e-8);
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  double w[2] = {1.0, -2.0}, m[2] = {0, 0}, v[2] = {0, 0};
  double grads[2][2] = {{0.5, -1.0}, {0.1, 0.2}};
  for (int t = 1; t <= 2; ++t) {
    p.set_grad(Array::from_vector(std::vector<double>{grads[t - 1][0], grads[t - 1][1]}, {1, 2}));
    opt.step();
    for (int i = 0; i < 2; ++i) {
      double g = grads[t - 1][i];
      w[i] -= lr * wd * w[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
      w[i] -= lr * mh / (std::sqrt(vh) + eps);
    }
    CHECK(p.data().at({0, 0}) == Approx(w[0]).epsilon(1e-12));
    CHECK(p.data().at({0, 1}) == Approx(w[1]).epsilon(1e-12));
  }
  CHECK(opt.steps() == 2);
}

TEST_CASE("SGD with momentum and weight decay", "[nn][optim]") {
  Tensor p(Array::from_vector(std::vector<double>{1.0}, {1}), true);
  SGD opt({ParamGroup{"all", {"p"}, {p}, 0.5}}, 0.1, 0.9);
  p.set_grad(Array::from_vector(std::vector<double>{2.0}, {1}));
  opt.step();  // g = 2 + 0.5*1 = 2.5; buf = 2.5; p = 1 - 0.25 = 0.75
  CHECK(p.data().item() == Approx(0.75));
  opt.step();  // g = 2 + 0.375 = 2.375; buf = 0.9*2.5 + 2.375 = 4.625; p = 0.75 - 0.4625
  CHECK(p.data().item() == Approx(0.2875));
}

TEST_CASE("parameter groups: decay only on matrices; the optimizer describes them", "[nn][optim]") {
  Generator g(1);
  Stack s(g);
  auto groups = make_param_groups(s, 0.1);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].label == "decay");
  CHECK(groups[0].params.size() == 3);  // emb, a.weight, b.weight
  CHECK(groups[1].params.size() == 3);  // ln.weight, ln.bias, a.bias
  AdamW opt(groups, 1e-3);
  CHECK(opt.describe().find("decay 3 tensors") != std::string::npos);
  CHECK(opt.describe().find("no_decay 3 tensors") != std::string::npos);
}

TEST_CASE("clip_grad_norm scales to the max norm and returns the norm before", "[nn][optim]") {
  Tensor a(Array::zeros({2}), true), b(Array::zeros({1}), true);
  a.set_grad(Array::from_vector(std::vector<float>{3, 0}, {2}));
  b.set_grad(Array::from_vector(std::vector<float>{4}, {1}));
  CHECK(clip_grad_norm({a, b}, 1.0) == Approx(5.0));
  CHECK(a.grad().at({0}) == Approx(0.6).epsilon(1e-5));
  CHECK(b.grad().at({0}) == Approx(0.8).epsilon(1e-5));
  CHECK(clip_grad_norm({a, b}, 10.0) == Approx(1.0).epsilon(1e-5));  // under the limit: unchanged
  CHECK(a.grad().at({0}) == Approx(0.6).epsilon(1e-5));
}

TEST_CASE("learning-rate schedules", "[nn][optim]") {
  WarmupCosineLR s(1.0, 10, 110, 0.1);
  CHECK(s.lr(0) == Approx(0.1));
  CHECK(s.lr(9) == Approx(1.0));
  CHECK(s.lr(10) == Approx(1.0));
  CHECK(s.lr(60) == Approx(0.55));  // half way: floor + (base - floor) / 2
  CHECK(s.lr(110) == Approx(0.1));
  CHECK(s.lr(500) == Approx(0.1));
  StepLR st(1.0, 10, 0.5);
  CHECK(st.lr(9) == 1.0);
  CHECK(st.lr(10) == 0.5);
  CHECK(st.lr(25) == 0.25);
  CHECK(ConstantLR(0.3).lr(1000) == 0.3);
  CHECK_THROWS_WITH(WarmupCosineLR(1, 20, 10), Catch::Contains("warmup"));
}

TEST_CASE("variant names: ids, paper names, sets, and a clear error", "[nn][attention]") {
  CHECK(parse_variant("Q-GQA-4").id() == "kv-gqa:4");
  CHECK(parse_variant("kv-gqa:4").paper_name() == "Q-GQA-4");
  CHECK(parse_variant("(Q=K=V)+").id() == "single+");
  CHECK(parse_variant("(Q=K-V)+").id() == "qk+");
  CHECK(parse_variant("GQA-4").kv_heads == 4);
  CHECK(parse_variant("MQA").id() == "mqa");
  CHECK(parse_variant("Q-MQA").id() == "kv-mqa");
  CHECK(parse_variant("Q-K=V").id() == "kv");
  CHECK(parse_variant("QKV").cached_tensors() == 2);
  CHECK(parse_variant("single").cached_tensors() == 1);
  CHECK_THROWS_WITH(parse_variant("qvk"), Catch::StartsWith("unknown variant 'qvk'; valid: qkv, kv, qk, single"));
  CHECK_THROWS(parse_variant("gqa:0"));
  auto lm = variant_set("paper-lm", 8);
  REQUIRE(lm.size() == 8);
  CHECK(lm[4].id() == "gqa:2");
  CHECK(lm[7].id() == "kv-mqa");
  CHECK(variant_set("paper-synthetic", 4).size() == 6);
  CHECK(variant_set("all", 8).size() == 10);
  CHECK(variant_set("qkv,single+", 4).size() == 2);
  AttentionConfig cfg;
  cfg.d_model = 8, cfg.n_heads = 4;
  Generator g(0);
  CHECK_THROWS_WITH(make_attention(parse_variant("gqa:3"), cfg, g), Catch::Contains("3 KV heads do not divide 4"));
  cfg.n_heads = 3;
  CHECK_THROWS_WITH(make_attention(parse_variant("qkv"), cfg, g), Catch::Contains("do not divide d_model 8"));
}
