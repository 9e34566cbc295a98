// The paper's claims about the variants, as executable checks.
#include <catch2/catch.hpp>

#include "tests/test_util.h"
#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "models/transformer.h"
#include "nn/attention/registry.h"

using namespace qkvlab;

namespace {
void assign(const Tensor& t, const Array& v) {  // writes v into t's values (a Tensor's data() is a const handle)
  Array d = t.data();
  d.copy_(v);
}

AttentionConfig small_cfg(bool causal = true) {
  AttentionConfig c;
  c.d_model = 8;
  c.n_heads = 2;
  c.context = 8;
  c.causal = causal;
  return c;
}

Tensor random_input(int64_t B, int64_t T, int64_t C, uint64_t seed, DType dt = DType::F32) {
  Generator g(seed);
  return Tensor(Array::normal({B, T, C}, g, 0.0, 1.0, dt));
}

// Largest |S - S^T| over the pre-softmax score maps (B,H,T,T).
double asymmetry(const Array& s) {
  double m = 0;
  for (int64_t b = 0; b < s.size(0); ++b)
    for (int64_t h = 0; h < s.size(1); ++h)
      for (int64_t i = 0; i < s.size(2); ++i)
        for (int64_t j = 0; j < s.size(3); ++j)
          m = std::max(m, std::abs(s.at({b, h, i, j}) - s.at({b, h, j, i})));
  return m;
}

double scores_asymmetry(const std::string& variant, uint64_t seed = 1) {
  Generator gen(seed);
  auto attn = make_attention(parse_variant(variant), small_cfg(), gen);
  // Give the positional bias non-trivial weights so it is not a pure rescaling.
  if (attn->pe) {
    assign(attn->pe->weight, Array::normal(attn->pe->weight.shape(), gen));
  }
  AttentionMaps maps;
  attn->forward(random_input(2, 6, 8, seed + 7), nullptr, &maps);
  return asymmetry(maps.scores);
}
}  // namespace

TEST_CASE("tying queries to keys makes pre-softmax scores exactly symmetric", "[attention]") {
  CHECK(scores_asymmetry("qk") == 0.0);
  CHECK(scores_asymmetry("single") == 0.0);
  CHECK(scores_asymmetry("qkv") > 1e-3);
  CHECK(scores_asymmetry("kv") > 1e-3);
  CHECK(scores_asymmetry("qk+") > 1e-3);
  CHECK(scores_asymmetry("single+") > 1e-3);
}

TEST_CASE("Q-K=V equals QKV whose value weights copy the key weights, in output and gradient", "[attention]") {
  Generator g1(3), g2(4);
  AttentionConfig cfg = small_cfg();
  QKVAttention full(cfg, g1);
  SharedKVAttention shared(cfg, g2);
  // Same q, k and o weights; QKV's v is a copy of k.
  assign(full.q.weight, shared.q.weight.data());
  assign(full.q.bias, shared.q.bias.data());
  assign(full.k.weight, shared.k.weight.data());
  assign(full.k.bias, Array::normal({8}, g1));
  assign(shared.k.bias, full.k.bias.data());
  assign(full.v.weight, shared.k.weight.data());
  assign(full.v.bias, shared.k.bias.data());
  assign(full.o.weight, shared.o.weight.data());
  assign(full.o.bias, shared.o.bias.data());

  Tensor x = random_input(2, 5, 8, 11);
  Tensor yf = full.forward(x), ys = shared.forward(x);
  CHECK(max_abs_diff(yf.data(), ys.data()) < 1e-6);

  Generator gu(5);
  Array up = Array::normal(yf.shape(), gu);
  yf.backward(up);
  ys.backward(up);
  Array expected = add(full.k.weight.grad(), full.v.weight.grad());  // d/dw_k sums both uses
  CHECK(max_abs_diff(shared.k.weight.grad(), expected) < 1e-5);
  CHECK(max_abs_diff(shared.k.bias.grad(), add(full.k.bias.grad(), full.v.bias.grad())) < 1e-5);
  CHECK(max_abs_diff(shared.q.weight.grad(), full.q.weight.grad()) < 1e-5);
}

TEST_CASE("Q=K-V equals QKV whose query weights copy the key weights, in output and gradient", "[attention]") {
  Generator g1(3), g2(4);
  AttentionConfig cfg = small_cfg();
  QKVAttention full(cfg, g1);
  SharedQKAttention shared(cfg, g2);
  assign(shared.k.bias, Array::normal({8}, g2));
  assign(full.q.weight, shared.k.weight.data());
  assign(full.q.bias, shared.k.bias.data());
  assign(full.k.weight, shared.k.weight.data());
  assign(full.k.bias, shared.k.bias.data());
  assign(full.v.weight, shared.v.weight.data());
  assign(full.v.bias, shared.v.bias.data());
  assign(full.o.weight, shared.o.weight.data());
  assign(full.o.bias, shared.o.bias.data());

  Tensor x = random_input(2, 5, 8, 12);
  Tensor yf = full.forward(x), ys = shared.forward(x);
  CHECK(max_abs_diff(yf.data(), ys.data()) < 1e-6);
  Generator gu(6);
  Array up = Array::normal(yf.shape(), gu);
  yf.backward(up);
  ys.backward(up);
  CHECK(max_abs_diff(shared.k.weight.grad(), add(full.q.weight.grad(), full.k.weight.grad())) < 1e-5);
  CHECK(max_abs_diff(shared.v.weight.grad(), full.v.weight.grad()) < 1e-5);
}

TEST_CASE("GQA with kv_heads == heads is QKV; MQA heads all read the same K and V", "[attention]") {
  AttentionConfig cfg = small_cfg();
  cfg.n_heads = 4;
  Generator g1(9), g2(9);
  auto qkv = make_attention(parse_variant("qkv"), cfg, g1);
  auto gqa = make_attention(parse_variant("gqa:4"), cfg, g2);  // same seed: same weights
  Tensor x = random_input(2, 5, 8, 13);
  CHECK(max_abs_diff(qkv->forward(x).data(), gqa->forward(x).data()) == 0.0);

  // MQA: one KV head; every query head's output equals attention of that head's q with the shared K and V.
  Generator g3(10);
  auto mqa_layer = make_attention(parse_variant("mqa"), cfg, g3);
  auto& mqa = dynamic_cast<QKVAttention&>(*mqa_layer);
  REQUIRE(mqa.k.weight.size(0) == 2);  // Hkv * D = 1 * 2
  AttentionMaps maps;
  mqa.forward(x, nullptr, &maps);
  Tensor q = split_heads(mqa.q(x), 4), k = split_heads(mqa.k(x), 1);  // (B,4,T,2), (B,1,T,2)
  for (int64_t h = 0; h < 4; ++h) {
    Array qh = q.data().narrow(1, h, 1);                                          // (B,1,T,D)
    Array s = mul(matmul(qh, k.data().mT()), 1.0 / std::sqrt(2.0));               // with the one K head
    CHECK(max_abs_diff(s, maps.scores.narrow(1, h, 1)) < 1e-6);
  }
}

TEST_CASE("causal attention: outputs before t ignore tokens after t, and their gradients are zero", "[attention]") {
  for (const char* v : {"qkv", "kv", "qk", "single", "gqa:1", "single+"}) {
    INFO(v);
    Generator gen(21);
    auto attn = make_attention(parse_variant(v), small_cfg(true), gen);
    Generator gx(22);
    Array xa = Array::normal({1, 6, 8}, gx);
    Tensor x(xa.clone(), true);
    Tensor y = attn->forward(x);
    Array xb = xa.clone();
    xb.narrow(1, 4, 2).copy_(Array::normal({1, 2, 8}, gx));  // change positions 4 and 5
    Tensor y2 = attn->forward(Tensor(xb));
    CHECK(max_abs_diff(y.data().narrow(1, 0, 4), y2.data().narrow(1, 0, 4)) == 0.0);
    CHECK(max_abs_diff(y.data().narrow(1, 4, 2), y2.data().narrow(1, 4, 2)) > 1e-4);
    // d(output at t=2)/d(x at t>2) == 0
    sum(slice(y, 1, 2, 3)).backward();
    CHECK(max_abs_diff(x.grad().narrow(1, 3, 3), Array::zeros({1, 3, 8})) == 0.0);
    CHECK(max_abs_diff(x.grad().narrow(1, 0, 3), Array::zeros({1, 3, 8})) > 0.0);
  }
}

TEST_CASE("decoding with the KV cache gives the full forward's logits and holds the formula's bytes", "[attention]") {
  for (const std::string v : {"qkv", "kv", "qk", "single", "gqa:2", "mqa", "kv-gqa:2", "kv-mqa", "qk+", "single+"}) {
    INFO(v);
    ModelConfig cfg;
    cfg.task = "lm";
    cfg.variant = parse_variant(v);
    cfg.d_model = 16, cfg.n_heads = 4, cfg.n_layers = 2, cfg.context = 12, cfg.vocab_size = 11;
    GPT model(cfg, 5);
    Generator g(7);
    std::vector<int64_t> toks;
    for (int i = 0; i < 10; ++i) toks.push_back(g.randint(0, 11));
    Array ids = Array::from_vector(toks, {1, 10});
    NoGradGuard ng;
    Array full = model.forward(ids).data();  // (1,10,V)
    KVCache cache;
    for (int64_t t = 0; t < 10; ++t) {
      Array step = model.forward(ids.narrow(1, t, 1), &cache).data();  // (1,1,V)
      CHECK(max_abs_diff(step, full.narrow(1, t, 1)) < 1e-5);
    }
    const int64_t D = 4, Hkv = model.config().kv_heads;
    const int64_t expected = cfg.n_layers * cfg.variant.cached_tensors() * Hkv * D * 4 /*float32*/ * 10 /*tokens*/;
    CHECK(cache.bytes() == expected);
    CHECK(cache.length() == 10);
  }
}

TEST_CASE("gradcheck passes through every variant in double precision", "[attention][gradcheck]") {
  for (const std::string v : {"qkv", "kv", "qk", "single", "gqa:1", "kv-mqa", "qk+", "single+"}) {
    INFO(v);
    Generator gen(31);
    AttentionConfig cfg = small_cfg();
    cfg.d_model = 4;
    cfg.context = 4;
    auto attn = make_attention(parse_variant(v), cfg, gen);
    attn->to(DType::F64);
    // d out / d x and d out / d every weight: gradcheck's own float64 leaves become the layer's weights.
    auto params = attn->named_parameters();
    std::vector<Array> inputs{Array::normal({1, 3, 4}, gen, 0.0, 1.0, DType::F64)};
    for (auto& [n, p] : params) inputs.push_back(p.data());
    GradcheckResult r = gradcheck(
        [&](const std::vector<Tensor>& xs) {
          for (size_t i = 0; i < params.size(); ++i) attn->set_parameter(params[i].first, xs[i + 1]);
          return attn->forward(xs[0]);
        },
        inputs, v);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.elements > 40);
  }
}

// attention_reference (nn/attention/sdpa.h) is the unfused chain: scale, bias, causal mask and softmax as four ops.
TEST_CASE("attention with the fused softmax equals the unfused chain: output, maps and gradients, bit for bit",
          "[attention][attention_softmax]") {
  struct Case {
    int64_t H, Hkv, T, S;
    bool causal, bias;
  };
  // causal and not, a KV cache (T < S), one token, grouped heads, and the (X)+ score bias.
  for (const Case c : {Case{4, 4, 5, 5, true, false}, Case{4, 2, 3, 7, true, false}, Case{2, 1, 6, 6, false, false},
                       Case{2, 2, 1, 1, true, false}, Case{4, 2, 5, 5, true, true}, Case{2, 2, 2, 6, true, true},
                       Case{2, 1, 4, 4, false, true}}) {
    INFO("H " << c.H << " Hkv " << c.Hkv << " T " << c.T << " S " << c.S << (c.causal ? " causal" : "")
              << (c.bias ? " bias" : ""));
    Generator gen(51);
    const int64_t B = 2, D = 8;
    const Array qa = Array::normal({B, c.H, c.T, D}, gen), ka = Array::normal({B, c.Hkv, c.S, D}, gen),
                va = Array::normal({B, c.Hkv, c.S, D}, gen), up = Array::normal({B, c.H, c.T, D}, gen);
    const Array wa = Array::normal({c.T, c.S}, gen);
    struct Run {
      Tensor q, k, v, w;
      Array out;
      AttentionMaps maps;
    };
    auto run = [&](bool fused) {
      Run r{Tensor(qa.clone(), true), Tensor(ka.clone(), true), Tensor(va.clone(), true), Tensor(wa.clone(), true),
            Array(), {}};
      ScoreBias bias;
      if (c.bias) bias = [&r](const Tensor& s, int64_t) { return s * 0.7 + r.w; };  // a learned (T,S) bias
      Tensor out = fused ? scaled_dot_product_attention(r.q, r.k, r.v, c.causal, bias, &r.maps)
                         : attention_reference(r.q, r.k, r.v, c.causal, bias, &r.maps);
      sum(out * Tensor(up)).backward();
      r.out = out.data();
      return r;
    };
    Run f = run(true), u = run(false);
    CHECK(max_abs_diff(f.out, u.out) == 0.0);
    CHECK(max_abs_diff(f.maps.scores, u.maps.scores) == 0.0);
    CHECK(max_abs_diff(f.maps.probs, u.maps.probs) == 0.0);
    CHECK(max_abs_diff(f.q.grad(), u.q.grad()) == 0.0);
    CHECK(max_abs_diff(f.k.grad(), u.k.grad()) == 0.0);
    CHECK(max_abs_diff(f.v.grad(), u.v.grad()) == 0.0);
    if (c.bias) CHECK(max_abs_diff(f.w.grad(), u.w.grad()) == 0.0);
  }
}

// Without maps or a score bias, scaled_dot_product_attention records one node, AttentionBackward, that keeps q, k
// and v and makes the probabilities again in backward, or keeps them too when they are small
// (keep_for_backward_bytes, nn/attention/sdpa.cpp); asked for maps, it runs the chain of ops, which keeps them.
// All three must give the same bits.
TEST_CASE("attention that keeps no probabilities gives the chain's output and gradients bit for bit",
          "[attention][attention_softmax]") {
  struct Case {
    int64_t H, Hkv, T, S;
    bool causal, v_is_k;
  };
  for (const Case c : {Case{4, 4, 5, 5, true, false}, Case{4, 2, 5, 5, true, false}, Case{2, 1, 6, 6, false, false},
                       Case{4, 4, 5, 5, true, true}, Case{4, 2, 6, 6, false, true}, Case{4, 2, 3, 7, true, false},
                       Case{2, 2, 1, 1, true, false},
                       // T > 64: the causal products in blocks of 64 queries or keys (sdpa.cpp, Core::blocked),
                       // GQA, a KV cache (S > T), v = k, a last block of 65 rows, three blocks
                       Case{4, 2, 70, 70, true, false}, Case{2, 2, 65, 90, true, false}, Case{4, 4, 129, 129, true, true},
                       Case{2, 2, 192, 192, true, false}, Case{2, 1, 100, 100, false, false}}) {
    INFO("H " << c.H << " Hkv " << c.Hkv << " T " << c.T << " S " << c.S << (c.causal ? " causal" : "")
              << (c.v_is_k ? " v is k" : ""));
    Generator gen(53);
    const int64_t B = 2, D = 8;
    const Array qa = Array::normal({B, c.H, c.T, D}, gen), ka = Array::normal({B, c.Hkv, c.S, D}, gen),
                va = Array::normal({B, c.Hkv, c.S, D}, gen), up = Array::normal({B, c.H, c.T, D}, gen);
    struct Run {
      Tensor q, k, v;
      Array out;
      std::string node;
      int64_t kept_bytes;  // what forward left alive besides its output
    };
    auto run = [&](bool keep_probs, int64_t keep_limit) {
      const testing::KeepForBackwardBytes limit(keep_limit);
      Run r{Tensor(qa.clone(), true), Tensor(ka.clone(), true), Tensor(va.clone(), true), Array(), "", 0};
      if (c.v_is_k) r.v = r.k;
      AttentionMaps maps;
      const int64_t before = Storage::live_bytes();
      Tensor out = scaled_dot_product_attention(r.q, r.k, r.v, c.causal, nullptr, keep_probs ? &maps : nullptr);
      maps = AttentionMaps();  // the caller's copies go; what stays is the graph's
      r.kept_bytes = Storage::live_bytes() - before - out.numel() * int64_t(sizeof(float));
      r.node = out.grad_fn()->name();
      sum(out * Tensor(up)).backward();
      r.out = out.data();
      return r;
    };
    const int64_t probs_bytes = B * c.H * c.T * c.S * int64_t(sizeof(float));
    Run f = run(false, 0), u = run(true, 0), kp = run(false, probs_bytes);
    CHECK(f.node == "AttentionBackward");
    CHECK(kp.node == "AttentionBackward");
    CHECK(u.node != "AttentionBackward");
    CHECK(f.kept_bytes == 0);             // nothing but the output: q, k, v were alive already
    CHECK(kp.kept_bytes == probs_bytes);  // the probabilities, at the limit
    CHECK(u.kept_bytes >= probs_bytes);   // the chain keeps the probabilities
    for (const Run* r : {&u, &kp}) {
      CHECK(max_abs_diff(f.out, r->out) == 0.0);
      CHECK(max_abs_diff(f.q.grad(), r->q.grad()) == 0.0);
      CHECK(max_abs_diff(f.k.grad(), r->k.grad()) == 0.0);
      if (!c.v_is_k) CHECK(max_abs_diff(f.v.grad(), r->v.grad()) == 0.0);
    }
    CHECK(run(false, probs_bytes - 1).kept_bytes == 0);  // one byte over the limit: made again
  }
  CHECK_THROWS_WITH(set_keep_for_backward_bytes(-1), Catch::Contains("expected a byte count >= 0, got -1"));
}

// Heads are permuted views of (B,T,H,D) projections. AttentionBackward's output and the gradients it returns keep
// their input's layout, so merging the heads (B,H,T,D) -> (B,T,H*D) and the gradients' way back to the projections
// are views, not transposing copies; the values are the chain's bit for bit.
TEST_CASE("attention's output and gradients keep the layout of permuted heads", "[attention]") {
  Generator gen(61);
  const int64_t B = 2, T = 70, H = 4, D = 8;
  for (int64_t Hkv : {4, 2}) {
    INFO("Hkv " << Hkv);
    const Array xq = Array::normal({B, T, H, D}, gen), xk = Array::normal({B, T, Hkv, D}, gen),
                xv = Array::normal({B, T, Hkv, D}, gen), up = Array::normal({B, T, H * D}, gen);
    struct Run {
      Tensor lq, lk, lv;
      Array out;
      Strides out_strides, q_strides;
    };
    auto run = [&](bool chain) {
      Run r{Tensor(xq.clone(), true), Tensor(xk.clone(), true), Tensor(xv.clone(), true), Array(), {}, {}};
      Tensor q = permute(r.lq, {0, 2, 1, 3}), k = permute(r.lk, {0, 2, 1, 3}), v = permute(r.lv, {0, 2, 1, 3});
      AttentionMaps maps;
      Tensor o = scaled_dot_product_attention(q, k, v, true, nullptr, chain ? &maps : nullptr);
      r.out_strides = o.data().strides();
      r.q_strides = q.data().strides();
      Tensor merged = reshape(permute(o, {0, 2, 1, 3}), {B, T, H * D});
      sum(merged * Tensor(up)).backward();
      r.out = merged.data();
      return r;
    };
    const Run f = run(false), u = run(true);
    CHECK(f.out_strides == f.q_strides);  // (B,T,H,D) memory, as q
    CHECK(max_abs_diff(f.out, u.out) == 0.0);
    CHECK(max_abs_diff(f.lq.grad(), u.lq.grad()) == 0.0);
    CHECK(max_abs_diff(f.lk.grad(), u.lk.grad()) == 0.0);
    CHECK(max_abs_diff(f.lv.grad(), u.lv.grad()) == 0.0);
  }
}

// A decoding step's attention (one query a head, no gradient to keep) takes its own path (one_query_attention in
// nn/attention/sdpa.cpp): the same kernels as the op that keeps q, k and v for backward, so the same bits, for
// every head sharing (MQA with one sequence multiplies its G query rows as one product, as matmul does), queries
// as permuted views or contiguous, v = k, one key to past a GEMM block, float and double.
TEST_CASE("attention for one query a head gives the general path's bits", "[attention]") {
  Generator gen(67);
  const int64_t H = 4, D = 32;
  for (DType dt : {DType::F32, DType::F64})
    for (int64_t B : {1, 2})
      for (int64_t Hkv : {4, 2, 1})
        for (int64_t S : {1, 5, 16, 64, 127, 300})
          for (bool v_is_k : {false, true})
            for (bool permuted : {true, false}) {
              INFO(dtype_name(dt) << " B " << B << " Hkv " << Hkv << " S " << S << " v=k " << v_is_k << " permuted "
                                  << permuted);
              const Array xq = Array::normal({B, 1, H, D}, gen).to(dt);
              const Array k = Array::normal({B, Hkv, 400, D}, gen).to(dt).narrow(2, 0, S);  // a cache's view
              const Array v = v_is_k ? k : Array::normal({B, Hkv, 400, D}, gen).to(dt).narrow(2, 0, S);
              const Array q = permuted ? xq.permute({0, 2, 1, 3}) : xq.permute({0, 2, 1, 3}).contiguous();
              Tensor fast;
              {
                NoGradGuard no_grad;
                fast = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), true, nullptr, nullptr);
              }
              // the same query (same layout) needing a gradient: the op that keeps q, k and v for backward
              const Tensor leaf(permuted ? xq.clone() : q.clone(), true);
              const Tensor tq = permuted ? permute(leaf, {0, 2, 1, 3}) : leaf;
              const Tensor general = scaled_dot_product_attention(tq, Tensor(k), Tensor(v), true, nullptr, nullptr);
              REQUIRE(fast.shape() == general.shape());
              CHECK(max_abs_diff(fast.data(), general.data()) == 0.0);
              for (int64_t d = 0; d < 4; ++d)  // the same layout (a size-1 dim's stride is never used)
                if (fast.size(d) > 1) CHECK(fast.data().strides()[size_t(d)] == general.data().strides()[size_t(d)]);
            }
  // a query whose head dim is not its densest: the output is written contiguous, with the chain's values
  NoGradGuard no_grad;
  const Array q = Array::normal({2, D, H, 1}, gen).permute({0, 2, 3, 1});  // (2,H,1,D), D of stride H
  const Array k = Array::normal({2, 2, 9, D}, gen), v = Array::normal({2, 2, 9, D}, gen);
  const Tensor fast = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), true, nullptr, nullptr);
  const Tensor chain = attention_reference(Tensor(q), Tensor(k), Tensor(v), true, nullptr, nullptr);
  CHECK(max_abs_diff(fast.data(), chain.data()) < 1e-5);
}

TEST_CASE("AttentionBackward agrees with finite differences in double precision", "[attention][gradcheck]") {
  for (int64_t keep : {int64_t{0}, int64_t{1} << 20}) {  // probabilities made again, and kept from forward
    const testing::KeepForBackwardBytes limit(keep);
    for (bool v_is_k : {false, true}) {
      for (int64_t Hkv : {4, 2, 1}) {
        INFO("Hkv " << Hkv << (v_is_k ? " v is k" : "") << ", keep probabilities up to " << keep << " bytes");
        Generator gen(59);
        std::vector<Array> inputs{Array::normal({2, 4, 3, 5}, gen, 0.0, 1.0, DType::F64),
                                  Array::normal({2, Hkv, 3, 5}, gen, 0.0, 1.0, DType::F64)};
        if (!v_is_k) inputs.push_back(Array::normal({2, Hkv, 3, 5}, gen, 0.0, 1.0, DType::F64));
        GradcheckResult r = gradcheck(
            [&](const std::vector<Tensor>& xs) {
              Tensor out = scaled_dot_product_attention(xs[0], xs[1], v_is_k ? xs[1] : xs[2], true);
              // (no grad_fn where gradcheck evaluates without recording)
              if (out.grad_fn()) CHECK(std::string(out.grad_fn()->name()) == "AttentionBackward");
              return out;
            },
            inputs, "attention");
        INFO(r.message);
        CHECK(r.ok);
      }
    }
  }
}
