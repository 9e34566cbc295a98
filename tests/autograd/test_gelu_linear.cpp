// gelu_linear (autograd/ops.h): linear(gelu(h), w, b) as one op that keeps for backward gelu(h) and GELU's slope
// when h is small (keep_for_backward_bytes), else only h. Its values and gradients must be those of the two
// separate ops bit for bit on both paths, in float as in double, with and without bias and whichever inputs
// require grad; gelu_and_backward_ and gelu_and_slope (tensor/ops.h), which it calls, must match gelu and
// gelu_backward bit for bit. The double-precision gradient check against finite differences is in the gradcheck
// suite (autograd/gradcheck_suite.cpp, op "gelu_linear").
#include <catch2/catch.hpp>

#include "tests/test_util.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "tensor/random.h"

using namespace qkvlab;

namespace {

// Bitwise equality of two float or double arrays: to_vector widens float to double exactly, so equal doubles
// mean equal floats (NaNs with the same bits are equal, 0 and -0 are not).
bool same_bits(const Array& a, const Array& b) {
  if (!a.defined() || !b.defined() || a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const std::vector<double> va = a.to_vector(), vb = b.to_vector();
  return std::memcmp(va.data(), vb.data(), va.size() * sizeof(double)) == 0;
}

struct Grads {
  Array y, gh, gw, gb;
};

// y = f(h, w, b), then backward of sum(y * r): r makes every output's gradient different.
template <class F>
Grads run(F f, const Array& h0, const Array& w0, const Array& b0, const Array& r, bool h_grad, bool w_grad) {
  Tensor h(h0, h_grad), w(w0, w_grad), b;
  if (b0.defined()) b = Tensor(b0, true);
  Tensor y = f(h, w, b);
  sum(y * Tensor(r)).backward();
  Grads g{y.data(), Array(), Array(), Array()};
  if (h_grad) g.gh = h.grad();
  if (w_grad) g.gw = w.grad();
  if (b.defined()) g.gb = b.grad();
  return g;
}

}  // namespace

TEST_CASE("gelu_and_slope: gelu and its slope in one pass; the slope times g is gelu_backward bit for bit",
          "[ops][gelu]") {
  Generator gen(13);
  for (DType dt : {DType::F32, DType::F64}) {
    Array x = (Array::normal({10, 100}, gen) * 4.0).to(dt);
    const Array g = Array::normal({10, 100}, gen).to(dt);
    x.set({0, 0}, std::numeric_limits<double>::quiet_NaN());
    x.set({0, 1}, std::numeric_limits<double>::infinity());
    x.set({0, 2}, -std::numeric_limits<double>::infinity());
    x.set({0, 3}, 0.0);
    for (const Array& xs : {x, x.mT()}) {  // contiguous, and a transposed view (the strided loop)
      INFO(dtype_name(dt) << (xs.is_contiguous() ? "" : ", transposed"));
      Array slope;
      const Array v = gelu_and_slope(xs, slope);
      CHECK(same_bits(v, gelu(xs)));
      CHECK(same_bits(slope, gelu_backward(xs, Array::ones(xs.shape(), dt))));
      Array d = xs.is_contiguous() ? g * 1.0 : g.mT() * 1.0;
      const Array want = gelu_backward(xs, d);
      mul_(d, slope);
      CHECK(same_bits(d, want));
    }
  }
}

// The float GELU kernels run fastmath::normal_cdf on 16 values at a time (with AVX-512) and elementwise elsewhere:
// the same bits for every kind of float. Every 997th bit pattern (4.3 million: both signs, subnormals, the
// clamp at |x| = 15.56, infinities, NaNs), in a row whose length is no multiple of 16. A NaN result only has to be
// a NaN: which operand's NaN an operation passes on is not pinned (on ARM64 the two paths give NaNs of opposite
// signs for a negative NaN input; on x86 the same bits).
TEST_CASE("gelu_and_slope, gelu_and_backward_: the same bits as gelu and gelu_backward over the whole float range",
          "[ops][gelu]") {
  auto same_bits = [](const Array& a, const Array& b) {  // as the file's same_bits, NaNs equal to any NaN
    if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
    const std::vector<double> va = a.to_vector(), vb = b.to_vector();
    for (size_t i = 0; i < va.size(); ++i)
      if (!(std::isnan(va[i]) && std::isnan(vb[i])) && std::memcmp(&va[i], &vb[i], sizeof(double)) != 0) return false;
    return true;
  };
  std::vector<float> xs;
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 997) {
    const uint32_t b = uint32_t(u);
    float f;
    std::memcpy(&f, &b, sizeof f);
    xs.push_back(f);
  }
  const Array x = Array::from_vector(xs, {int64_t(xs.size())});
  REQUIRE(x.numel() % 16 != 0);
  Array slope;
  const Array v = gelu_and_slope(x, slope);
  CHECK(same_bits(v, gelu(x)));
  CHECK(same_bits(slope, gelu_backward(x, Array::ones(x.shape(), DType::F32))));
  const Array g = Array::ones(x.shape(), DType::F32) * 0.75;
  Array d = g * 1.0;
  const Array v2 = gelu_and_backward_(x, d);
  CHECK(same_bits(v2, gelu(x)));
  CHECK(same_bits(d, gelu_backward(x, g)));
}

TEST_CASE("gelu_and_backward_: gelu and gelu_backward in one pass, bit for bit", "[ops][gelu]") {
  Generator gen(7);
  for (DType dt : {DType::F32, DType::F64}) {
    // 1000 elements reach the vector loop and its tail; x spans the polynomial's range and beyond.
    Array x = (Array::normal({10, 100}, gen) * 4.0).to(dt);
    Array g = Array::normal({10, 100}, gen).to(dt);
    x.set({0, 0}, std::numeric_limits<double>::quiet_NaN());
    x.set({0, 1}, std::numeric_limits<double>::infinity());
    x.set({0, 2}, -std::numeric_limits<double>::infinity());
    x.set({0, 3}, 0.0);
    x.set({0, 4}, 20.0);
    Array d = g * 1.0;  // a fresh copy of g
    const void* storage = dt == DType::F32 ? static_cast<const void*>(d.data<float>()) : nullptr;
    Array v = gelu_and_backward_(x, d);
    CHECK(same_bits(v, gelu(x)));
    CHECK(same_bits(d, gelu_backward(x, g)));
    if (dt == DType::F32) CHECK(static_cast<const void*>(d.data<float>()) == storage);  // float: in place
    // Transposed operands take the strided loop; a transposed gradient is not written in place.
    Array dt_ = g.mT();
    Array vt = gelu_and_backward_(x.mT(), dt_);
    CHECK(same_bits(vt, gelu(x.mT())));
    CHECK(same_bits(dt_, gelu_backward(x.mT(), g.mT())));
    // A gradient to broadcast falls back to the two kernels.
    Array g_row = Array::normal({100}, gen).to(dt);
    Array db = g_row;
    gelu_and_backward_(x, db);
    CHECK(same_bits(db, gelu_backward(x, g_row)));
  }
  Array g64 = Array::zeros({2}, DType::F64);
  CHECK_THROWS_WITH(gelu_and_backward_(Array::zeros({2}, DType::F32), g64),
                    Catch::Contains("gelu_and_backward_: expected operands of the same dtype"));
}

TEST_CASE("gelu_and_backward_inplace_: the same bits, gelu(x) written over x", "[ops][gelu]") {
  Generator gen(11);
  Array x = Array::normal({10, 100}, gen) * 4.0;
  Array g = Array::normal({10, 100}, gen);
  Array xi = x * 1.0, d = g * 1.0;  // fresh copies to overwrite
  const void* storage = xi.data<float>();
  gelu_and_backward_inplace_(xi, d);
  CHECK(same_bits(xi, gelu(x)));
  CHECK(same_bits(d, gelu_backward(x, g)));
  CHECK(static_cast<const void*>(xi.data<float>()) == storage);
  // float64 falls back to the two kernels: x is rebound to gelu(x).
  Array x64 = x.to(DType::F64), d64 = g.to(DType::F64);
  gelu_and_backward_inplace_(x64, d64);
  CHECK(same_bits(x64, gelu(x.to(DType::F64))));
  CHECK(same_bits(d64, gelu_backward(x.to(DType::F64), g.to(DType::F64))));
}

// When h is an intermediate (not a leaf the caller still holds), the node is its only owner: the last backward
// writes gelu(h) over h instead of a new buffer. Same bits as with retain_graph (which keeps h intact), and the
// backward's peak lower by about h's bytes.
TEST_CASE("gelu_linear: the last backward reuses h's buffer, with the same gradients", "[autograd][gelu]") {
  const testing::KeepForBackwardBytes limit(0);  // h is kept, not gelu(h) and the slope, however small
  Generator gen(5);
  // h (512, 256) is 512 KB, and so is its gradient; every other tensor backward makes is 16 KB or less.
  const Array x0 = Array::normal({512, 8}, gen), w10 = Array::normal({256, 8}, gen) * 0.3;
  const Array w20 = Array::normal({4, 256}, gen) * 0.1, r = Array::normal({512, 4}, gen);
  const int64_t h_bytes = 512 * 256 * int64_t(sizeof(float));
  struct Out {
    Array gx, gw1, gw2;
    int64_t peak = 0;
  };
  auto step = [&](bool retain, bool twice) {
    Tensor x(x0, true), w1(w10, true), w2(w20, true);
    Tensor loss = sum(gelu_linear(linear(x, w1, Tensor()), w2, Tensor()) * Tensor(r));  // h = x w1^T is an intermediate
    const int64_t base = Storage::live_bytes();
    Storage::reset_peak();
    loss.backward(Array(), retain);
    Out o{x.grad(), w1.grad(), w2.grad(), Storage::peak_bytes() - base};
    if (twice) {  // the graph kept by retain_graph gives the same gradients again, so h was not overwritten
      x.zero_grad(); w1.zero_grad(); w2.zero_grad();
      loss.backward();
      CHECK(same_bits(x.grad(), o.gx));
      CHECK(same_bits(w1.grad(), o.gw1));
      CHECK(same_bits(w2.grad(), o.gw2));
    }
    return o;
  };
  const Out last = step(false, false), kept = step(true, true);
  CHECK(same_bits(last.gx, kept.gx));
  CHECK(same_bits(last.gw1, kept.gw1));
  CHECK(same_bits(last.gw2, kept.gw2));
  CHECK(kept.peak - last.peak >= h_bytes * 9 / 10);
}

TEST_CASE("gelu_linear: the values and gradients of linear(gelu(h), w, b), bit for bit", "[autograd][gelu]") {
  auto fused = [](const Tensor& h, const Tensor& w, const Tensor& b) { return gelu_linear(h, w, b); };
  auto plain = [](const Tensor& h, const Tensor& w, const Tensor& b) { return linear(gelu(h), w, b); };
  // h keeps only itself (limit 0), or gelu(h) and the slope (a limit above its 5 KB in float64)
  for (int64_t keep : {int64_t{0}, int64_t{1} << 20}) {
    const testing::KeepForBackwardBytes limit(keep);
    Generator gen(3);
    for (DType dt : {DType::F32, DType::F64}) {
      // (2,9,70) -> (2,9,33): 70 inputs and 18 rows reach the GEMM's full tiles and its edges.
      const Array h = (Array::normal({2, 9, 70}, gen) * 2.0).to(dt);
      const Array w = (Array::normal({33, 70}, gen) * 0.1).to(dt);
      const Array b = Array::normal({33}, gen).to(dt);
      const Array r = Array::normal({2, 9, 33}, gen).to(dt);
      for (bool with_bias : {true, false}) {
        for (auto [h_grad, w_grad] : {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
          INFO("dtype " << dtype_name(dt) << ", bias " << with_bias << ", h grad " << h_grad << ", w grad " << w_grad
                        << ", keep up to " << keep << " bytes");
          const Array bias = with_bias ? b : Array();
          Grads f = run(fused, h, w, bias, r, h_grad, w_grad);
          Grads p = run(plain, h, w, bias, r, h_grad, w_grad);
          CHECK(same_bits(f.y, p.y));
          if (h_grad) CHECK(same_bits(f.gh, p.gh));
          if (w_grad) CHECK(same_bits(f.gw, p.gw));
          if (with_bias) CHECK(same_bits(f.gb, p.gb));
        }
      }
    }
  }
  // What forward keeps: h (already alive: nothing new) up to the limit 0, gelu(h) and its slope above.
  Generator gen(4);
  const Array h0 = Array::normal({16, 64}, gen), w0 = Array::normal({8, 64}, gen);
  for (int64_t keep : {int64_t{0}, int64_t{1} << 20}) {
    const testing::KeepForBackwardBytes limit(keep);
    Tensor h(h0, true), w(w0, true);
    const int64_t before = Storage::live_bytes();
    Tensor y = gelu_linear(h, w, Tensor());
    const int64_t kept = Storage::live_bytes() - before - y.data().numel() * int64_t(sizeof(float));
    CHECK(kept == (keep ? 2 * h0.numel() * int64_t(sizeof(float)) : 0));
  }
  // Without any input that requires grad, nothing is recorded.
  Tensor y = gelu_linear(Tensor(Array::ones({2, 3})), Tensor(Array::ones({4, 3})), Tensor());
  CHECK_FALSE(y.requires_grad());
  CHECK(y.data().shape() == Shape{2, 4});
  // Shape errors name the product.
  CHECK_THROWS_WITH(gelu_linear(Tensor(Array::ones({2, 3})), Tensor(Array::ones({4, 5})), Tensor()),
                    Catch::Contains("does not end in the weight's 5 inputs"));
}
