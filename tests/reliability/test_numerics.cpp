// Numerical robustness through autograd and the attention core: logits of +-1e4, fully masked rows, a constant
// LayerNorm row, exp overflow. What each must give is written beside it (tensor/ops.h documents the choices: a
// fully masked softmax row is all zeros, never NaN).
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "nn/attention/sdpa.h"
#include "tensor/ops.h"

using namespace qkvlab;
using Catch::Matchers::Contains;

namespace {
bool finite(const Array& a) {
  for (double v : a.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}
Tensor leaf(std::vector<double> v, const Shape& s, DType dt = DType::F32) {
  return Tensor(Array::from_vector(v, s).to(dt), true);
}
}  // namespace

TEST_CASE("cross-entropy with logits of +-1e4: exact loss, finite gradient", "[reliability][numerics]") {
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor logits = leaf({1e4, -1e4, 0, 1e4, -1e4, 0}, {2, 3}, dt);
    // Row 0 is certain of class 0 (loss 0); row 1 puts class 1 2e4 below the best (loss 2e4). Mean: 1e4.
    Tensor loss = cross_entropy(logits, Array::from_vector(std::vector<int64_t>{0, 1}, {2}));
    CHECK(loss.item() == 1e4);
    loss.backward();
    const Array g = logits.grad();
    REQUIRE(finite(g));
    // d/dlogits = (softmax - onehot) / 2: row 0 all zero, row 1 (1, -1, 0) / 2.
    CHECK(g.to_vector() == std::vector<double>{0, 0, 0, 0.5, -0.5, 0});
  }
}

TEST_CASE("softmax of +-1e4 through autograd: no overflow forward or backward", "[reliability][numerics]") {
  Tensor x = leaf({1e4, -1e4, 1e4}, {1, 3});
  Tensor y = softmax(x, -1);
  CHECK(y.data().to_vector() == std::vector<double>{0.5, 0.0, 0.5});
  sum(mul(y, Tensor(Array::from_vector(std::vector<double>{1, 2, 3}, {1, 3}).to(DType::F32)))).backward();
  REQUIRE(finite(x.grad()));
  CHECK(x.grad().at({0, 0}) == Approx(-0.5));
  CHECK(x.grad().at({0, 1}) == 0.0);
  CHECK(x.grad().at({0, 2}) == Approx(0.5));
}

TEST_CASE("a fully masked attention row gives zeros and zero gradients, never NaN", "[reliability][numerics]") {
  // q, k, v (B=1, H=1, T=3, D=2); a score bias masks every key of query 1 (as a padding mask would).
  Generator gen(5);
  Tensor q(Array::normal({1, 1, 3, 2}, gen), true), k(Array::normal({1, 1, 3, 2}, gen), true),
      v(Array::normal({1, 1, 3, 2}, gen), true);
  Array row1 = Array::zeros({3, 3});
  for (int64_t j = 0; j < 3; ++j) row1.set({1, j}, 1.0);
  ScoreBias mask_row1 = [&](const Tensor& s, int64_t) { return masked_fill(s, row1, -INFINITY); };
  AttentionMaps maps;
  Tensor out = scaled_dot_product_attention(q, k, v, /*causal=*/false, mask_row1, &maps);
  REQUIRE(finite(out.data()));
  for (int64_t d = 0; d < 2; ++d) CHECK(out.data().at({0, 0, 1, d}) == 0.0);
  for (int64_t j = 0; j < 3; ++j) CHECK(maps.probs.at({0, 0, 1, j}) == 0.0);
  sum(out).backward();
  for (const Tensor* t : {&q, &k, &v}) REQUIRE(finite(t->grad()));
  // Query 1 saw nothing, so its gradient is exactly zero.
  for (int64_t d = 0; d < 2; ++d) CHECK(q.grad().at({0, 0, 1, d}) == 0.0);
  // The same with the causal mask on top, and a fully masked log_softmax row stays -inf (not NaN).
  Tensor causal_out = scaled_dot_product_attention(q, k, v, /*causal=*/true, mask_row1);
  CHECK(finite(causal_out.data()));
  Array lsm = log_softmax(Array::full({1, 4}, -INFINITY), -1);
  for (double x : lsm.to_vector()) CHECK(x == -INFINITY);
}

TEST_CASE("cross-entropy over a fully masked logit row: +inf loss (probability 0), finite gradient, no NaN",
          "[reliability][numerics]") {
  Tensor logits = leaf({-INFINITY, -INFINITY, -INFINITY, 1, 2, 3}, {2, 3});
  Tensor loss = cross_entropy(logits, Array::from_vector(std::vector<int64_t>{0, 2}, {2}));
  CHECK(loss.item() == INFINITY);
  loss.backward();
  const Array g = logits.grad();
  // softmax - onehot over 2 rows: the masked row's softmax is 0, so (-1, 0, 0) / 2.
  CHECK(g.at({0, 0}) == -0.5);
  CHECK(g.at({0, 1}) == 0.0);
  CHECK(g.at({0, 2}) == 0.0);
  for (int64_t j = 0; j < 3; ++j) CHECK(std::isfinite(g.at({1, j})));
  // Ignoring that row leaves a finite mean over the other.
  Tensor logits2 = leaf({-INFINITY, -INFINITY, -INFINITY, 1, 2, 3}, {2, 3});
  Tensor l2 = cross_entropy(logits2, Array::from_vector(std::vector<int64_t>{-100, 2}, {2}));
  CHECK(std::isfinite(l2.item()));
  l2.backward();
  CHECK(finite(logits2.grad()));
}

TEST_CASE("LayerNorm of a constant row: output = bias, finite gradients", "[reliability][numerics]") {
  for (double c : {0.0, 3.25, -1e4, 1e30}) {
    INFO("constant " << c);
    Tensor x = leaf({c, c, c, c}, {1, 4});
    Tensor w = leaf({1, 2, 3, 4}, {4}), b = leaf({0.5, -0.5, 0.25, 0}, {4});
    Tensor y = layer_norm(x, w, b);
    CHECK(y.data().to_vector() == std::vector<double>{0.5, -0.5, 0.25, 0});
    sum(mul(y, Tensor(Array::from_vector(std::vector<double>{1, -1, 2, 0}, {1, 4}).to(DType::F32)))).backward();
    CHECK(finite(x.grad()));
    CHECK(finite(w.grad()));
    CHECK(finite(b.grad()));
  }
}

TEST_CASE("exp overflow: +inf (not NaN) and anomaly mode names the op", "[reliability][numerics]") {
  Tensor x = leaf({1.0, 100.0, -1e4}, {3});
  Tensor y = exp(x);
  CHECK(y.data().at({0}) == Approx(std::exp(1.0)));
  CHECK(y.data().at({1}) == INFINITY);  // e^100 > FLT_MAX
  CHECK(y.data().at({2}) == 0.0);
  AnomalyGuard on;
  Tensor x2 = leaf({1.0, 100.0}, {2});
  REQUIRE_THROWS_WITH(exp(x2), Contains("ExpBackward") && Contains("NaN or Inf"));
}
