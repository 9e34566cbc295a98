// recompute_in_backward (autograd/recompute.h): the same gradients as the plain forward, less memory kept,
// the random stream replayed, and clear errors when fn does not compute the same thing twice.
#include <catch2/catch.hpp>

#include "autograd/gradcheck.h"
#include "autograd/recompute.h"
#include "models/config.h"
#include "models/transformer.h"
#include "nn/attention/registry.h"
#include "tensor/random.h"
#include "tests/lm_fixture.h"

using namespace qkvlab;

namespace {

bool same_bits(const Array& a, const Array& b) {
  if (!a.defined() || !b.defined() || a.shape() != b.shape()) return false;
  const auto va = a.to_vector(), vb = b.to_vector();
  for (size_t i = 0; i < va.size(); ++i)
    if (va[i] != vb[i]) return false;
  return true;
}

// A small two-layer function of x with parameters w1, b1, w2: x is used twice (a residual), as in a block.
struct Net {
  Tensor w1, b1, w2;
  explicit Net(Generator& g, DType dt) {
    w1 = Tensor(Array::normal({6, 4}, g).to(dt), true);
    b1 = Tensor(Array::normal({6}, g).to(dt), true);
    w2 = Tensor(Array::normal({4, 6}, g).to(dt), true);
  }
  Tensor operator()(const Tensor& x) const {
    Tensor h = tanh(add(matmul(x, transpose(w1, 0, 1)), b1));  // (N,4) -> (N,6)
    return add(x, matmul(h, transpose(w2, 0, 1)));             // (N,6) -> (N,4), plus x
  }
  void zero_grad() {
    for (Tensor* p : {&w1, &b1, &w2}) p->zero_grad();
  }
};

}  // namespace

TEST_CASE("recompute_in_backward: bitwise the gradients of the plain forward, for inputs and parameters",
          "[recompute]") {
  for (DType dt : {DType::F32, DType::F64}) {
    Generator g(1);
    Net net(g, dt);
    const Array xv = Array::normal({5, 4}, g).to(dt), up = Array::normal({5, 4}, g).to(dt);

    Tensor x1(xv, true);
    Tensor y1 = mul(net(x1), 2.0);
    y1.backward(up);
    const Array gx = x1.grad(), gw1 = net.w1.grad(), gb1 = net.b1.grad(), gw2 = net.w2.grad();
    net.zero_grad();

    Tensor x2(xv, true);
    Tensor y2 = mul(recompute_in_backward([&](const std::vector<Tensor>& in) { return net(in[0]); }, {x2}), 2.0);
    CHECK(same_bits(y1.data(), y2.data()));
    y2.backward(up);
    CHECK(same_bits(x2.grad(), gx));
    CHECK(same_bits(net.w1.grad(), gw1));
    CHECK(same_bits(net.b1.grad(), gb1));
    CHECK(same_bits(net.w2.grad(), gw2));
  }
}

TEST_CASE("recompute_in_backward: gradcheck in double, and the check fails when the recomputation differs",
          "[recompute]") {
  Generator g(2);
  Net net(g, DType::F64);
  GradcheckFn good = [&](const std::vector<Tensor>& x) {
    return recompute_in_backward([&](const std::vector<Tensor>& in) { return mul(net(in[0]), in[1]); }, x);
  };
  GradcheckResult r = gradcheck(good, {Array::normal({3, 4}, g), Array::normal({3, 4}, g)}, "recompute");
  INFO(r.message);
  CHECK(r.ok);

  // Dropout without its generator: the second forward draws another mask, so backward differentiates a
  // different function than forward computed. The check has to notice.
  Generator drop(7);
  GradcheckFn forgot_rng = [&](const std::vector<Tensor>& x) {
    drop.manual_seed(7);  // every call of the checked function draws the same mask in forward
    return recompute_in_backward([&](const std::vector<Tensor>& in) { return dropout(in[0], 0.5, true, drop); }, x);
  };
  GradcheckResult bad = gradcheck(forgot_rng, {Array::normal({4, 6}, g)}, "recompute without rng");
  CHECK_FALSE(bad.ok);

  // The same with the generator handed over: the mask is replayed and the check passes.
  GradcheckFn with_rng = [&](const std::vector<Tensor>& x) {
    drop.manual_seed(7);
    return recompute_in_backward([&](const std::vector<Tensor>& in) { return dropout(in[0], 0.5, true, drop); },
                                 x, &drop);
  };
  GradcheckResult ok = gradcheck(with_rng, {Array::normal({4, 6}, g)}, "recompute with rng");
  INFO(ok.message);
  CHECK(ok.ok);
}

TEST_CASE("recompute_in_backward: the random stream continues as if nothing was recomputed", "[recompute]") {
  Generator a(11), b(11);
  const Array xv = Array::normal({8, 8}, a);
  b.set_state(a.state());
  Tensor x1(xv, true), x2(xv, true);
  Tensor y1 = dropout(x1, 0.3, true, a);
  Tensor y2 = recompute_in_backward([&](const std::vector<Tensor>& in) { return dropout(in[0], 0.3, true, b); },
                                    {x2}, &b);
  CHECK(same_bits(y1.data(), y2.data()));
  sum(y1).backward();
  sum(y2).backward();
  CHECK(same_bits(x1.grad(), x2.grad()));
  CHECK(a.next_u64() == b.next_u64());  // backward set the generator back where forward left it
}

TEST_CASE("recompute_in_backward: a second backward with retain_graph recomputes again", "[recompute]") {
  Generator g(3);
  Net net(g, DType::F64);
  Tensor x(Array::normal({2, 4}, g).to(DType::F64), true);
  Tensor y = sum(recompute_in_backward([&](const std::vector<Tensor>& in) { return net(in[0]); }, {x}));
  y.backward(Array(), /*retain_graph=*/true);
  const std::vector<double> once = x.grad().to_vector(), w_once = net.w1.grad().to_vector();
  y.backward();
  const std::vector<double> twice = x.grad().to_vector(), w_twice = net.w1.grad().to_vector();
  for (size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == Approx(2 * once[i]));
  for (size_t i = 0; i < w_once.size(); ++i) CHECK(w_twice[i] == Approx(2 * w_once[i]));
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("already freed"));
}

TEST_CASE("recompute_in_backward: fn that changes its result's shape the second time is an error",
          "[recompute]") {
  int calls = 0;
  Tensor x(Array::ones({2, 3}), true);
  Tensor y = recompute_in_backward(
      [&](const std::vector<Tensor>& in) { return ++calls == 1 ? mul(in[0], 2.0) : sum(in[0]); }, {x});
  CHECK_THROWS_WITH(sum(y).backward(),
                    Catch::Contains("recompute_in_backward: the recomputed output is float32 of shape ()") &&
                        Catch::Contains("the first forward gave float32 of shape (2,3)"));
  CHECK_THROWS_WITH(recompute_in_backward(RecomputeFn(), {x}), Catch::Contains("no function given"));
}

TEST_CASE("GPT with set_recompute: the same gradients, a fraction of the tensor bytes kept", "[recompute]") {
  for (const char* variant : {"qkv", "kv", "single+"}) {
    const ModelConfig cfg = testing::lm_config(variant, 32, 4, 3, 16, 20);
    const auto batch = testing::random_lm_batch(8, 16, 20, 5);  // not a structured binding: lambdas use it
    const Array &x = batch.first, &y = batch.second;

    auto step = [&](bool recompute, std::vector<Array>& grads) {
      GPT model(cfg, 9);
      model.train();
      model.set_recompute(recompute);
      Storage::reset_peak();
      const int64_t base = Storage::live_bytes();
      StepResult r = model_loss(model, x, y);
      r.loss.backward();
      for (const auto& [name, p] : model.named_parameters()) grads.push_back(p.grad());
      return Storage::peak_bytes() - base;
    };
    std::vector<Array> plain, again;
    const int64_t plain_peak = step(false, plain), recompute_peak = step(true, again);
    INFO(variant);
    REQUIRE(plain.size() == again.size());
    for (size_t i = 0; i < plain.size(); ++i) CHECK(same_bits(plain[i], again[i]));
    CHECK(recompute_peak < plain_peak * 3 / 4);  // 3 blocks: at most one block's activations at a time
  }
}

TEST_CASE("recompute_in_backward: a throw during the recomputation leaves the generator where forward left it",
          "[recompute]") {
  Generator gen(4);
  int calls = 0;
  Tensor x(Array::ones({3, 3}), true);
  Tensor y = recompute_in_backward(
      [&](const std::vector<Tensor>& in) {
        if (++calls == 2) fail("boom");  // the recomputation fails before drawing its mask
        return dropout(in[0], 0.5, true, gen);
      },
      {x}, &gen);
  const Generator::State after_forward = gen.state();
  CHECK_THROWS_WITH(sum(y).backward(), Catch::Contains("boom"));
  Generator expected(0);
  expected.set_state(after_forward);
  CHECK(gen.next_u64() == expected.next_u64());  // not the rewound stream of the replay
}
