// tensor/fastmath.h: the vectorisable float exp and normal CDF against libm in double, swept densely over every
// range the kernels feed them, plus the special values (NaN, infinities, zeros, subnormals).
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "tensor/fastmath.h"
#include "tensor/ops.h"

using namespace qkvlab;

namespace {
// Distance in representable floats (0 and -0 are 0 apart).
int64_t ulps(float a, float b) {
  auto ordered = [](float f) {
    int32_t i;
    std::memcpy(&i, &f, 4);
    return i < 0 ? int64_t(INT32_MIN) - i : int64_t(i);
  };
  return std::llabs(ordered(a) - ordered(b));
}

template <class F, class Ref>
int64_t max_ulps(F f, Ref ref, float lo, float hi, float rel_step) {
  int64_t worst = 0;
  for (float x = lo; x < hi; x += rel_step * (1.0f + std::fabs(x))) {
    const float want = static_cast<float>(ref(static_cast<double>(x)));
    const int64_t d = ulps(f(x), want);
    if (d > worst) {
      worst = d;
      UNSCOPED_INFO("x = " << x << ": got " << f(x) << ", want " << want);
    }
  }
  return worst;
}
}  // namespace

TEST_CASE("fastmath: float exp is within 1 ulp of exp in double, subnormals and overflow included", "[fastmath]") {
  auto f = [](float x) { return fastmath::exp(x); };
  auto ref = [](double x) { return std::exp(x); };
  CHECK(max_ulps(f, ref, -110.0f, 90.0f, 1e-6f) <= 1);  // ~4 million points from 0 through subnormals to inf
  CHECK(max_ulps(f, ref, -1.0f, 1.0f, 1e-7f) <= 1);     // dense where softmax lives
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(fastmath::exp(0.0f) == 1.0f);
  CHECK(fastmath::exp(-inf) == 0.0f);  // a masked score
  CHECK(fastmath::exp(inf) == inf);
  CHECK(fastmath::exp(89.0f) == inf);
  CHECK(fastmath::exp(-104.0f) == 0.0f);
  CHECK(std::isnan(fastmath::exp(std::numeric_limits<float>::quiet_NaN())));
  CHECK(fastmath::exp(1.0) == std::exp(1.0));  // double: libm itself
}

TEST_CASE("fastmath: exp_nonpositive gives exp's bits for every x <= 0, and 0 for NaN", "[fastmath]") {
  // Every 7th bit pattern from -0 down to -110 (past the clamp at -104): 160 million values, subnormal results
  // included. (All 2^32 floats were compared once by hand on 2026-12-04, for exp and normal_cdf before and after.)
  int64_t differ = 0;
  for (uint32_t bits = 0x80000000u; bits <= 0xC2DC0000u; bits += 7) {  // -0 ... -110
    const float x = std::bit_cast<float>(bits);
    if (std::bit_cast<uint32_t>(fastmath::exp_nonpositive(x)) != std::bit_cast<uint32_t>(fastmath::exp(x))) {
      if (differ++ == 0) UNSCOPED_INFO("first difference at x = " << x);
    }
  }
  CHECK(differ == 0);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(fastmath::exp_nonpositive(0.0f) == 1.0f);
  CHECK(fastmath::exp_nonpositive(-inf) == 0.0f);
  // NaN is clamped like a very negative x (no NaN may reach the conversion to int); normal_cdf stays NaN.
  CHECK(fastmath::exp_nonpositive(std::numeric_limits<float>::quiet_NaN()) == 0.0f);
  CHECK(std::isnan(fastmath::normal_cdf(std::numeric_limits<float>::quiet_NaN()).gauss));
}

// Relative error, not ulps: the tail Phi(-|x|) spans 0.5 down to 1e-38, and a bound on the relative error is what
// GELU's users see. The fit alone is 2.4e-7 in float (fastmath.h); measured worst 4.1e-7 for Phi and 1.7e-7 for
// the density, the same with gcc -O3 and clang -O1 on x86-64 and gcc -O3 on aarch64 (under qemu). The bound
// leaves room for a compiler that fuses fewer multiply-adds.
TEST_CASE("fastmath: normal_cdf gives Phi(x) and exp(-x^2/2) to 1e-6 relative, tails and special values included",
          "[fastmath]") {
  double worst_cdf = 0, worst_gauss = 0;
  float at_cdf = 0, at_gauss = 0;
  for (float x = -15.5f; x < 15.5f; x += 1e-5f * (1.0f + std::fabs(x))) {  // ~0.6 million points
    const fastmath::NormalCdf n = fastmath::normal_cdf(x);
    const double xd = x, cdf = 0.5 * std::erfc(-xd / std::sqrt(2.0)), gauss = std::exp(-0.5 * xd * xd);
    if (cdf >= std::numeric_limits<float>::min() && std::fabs(n.cdf - cdf) / cdf > worst_cdf) {
      worst_cdf = std::fabs(n.cdf - cdf) / cdf;
      at_cdf = x;
    }
    if (gauss >= std::numeric_limits<float>::min() && std::fabs(n.gauss - gauss) / gauss > worst_gauss) {
      worst_gauss = std::fabs(n.gauss - gauss) / gauss;
      at_gauss = x;
    }
  }
  INFO("worst Phi error " << worst_cdf << " at x = " << at_cdf << ", worst density error " << worst_gauss
                          << " at x = " << at_gauss);
  CHECK(worst_cdf < 1e-6);
  CHECK(worst_gauss < 1e-6);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(fastmath::normal_cdf(0.0f).cdf == 0.5f);
  CHECK(fastmath::normal_cdf(0.0f).gauss == 1.0f);
  CHECK(fastmath::normal_cdf(inf).cdf == 1.0f);
  CHECK(fastmath::normal_cdf(-inf).cdf == 0.0f);  // so GELU(-inf) = -inf * 0 = NaN, as x * Phi(x) in double
  CHECK(fastmath::normal_cdf(-inf).gauss == 0.0f);
  CHECK(fastmath::normal_cdf(-20.0f).cdf == 0.0f);  // Phi(-20) = 2.8e-89 rounds to 0
  CHECK(fastmath::normal_cdf(20.0f).cdf == 1.0f);
  CHECK(std::isnan(fastmath::normal_cdf(std::numeric_limits<float>::quiet_NaN()).cdf));
  CHECK(std::isnan(fastmath::normal_cdf(std::numeric_limits<float>::quiet_NaN()).gauss));
}

TEST_CASE("fastmath: the float kernels that use it agree with float64 to float precision", "[fastmath]") {
  // gelu, its backward, softmax and cross-entropy in float32 against the same ops in float64 (libm).
  Generator gen(5);
  Array x = mul(Array::normal({64, 96}, gen), 3.0);  // values out to +-12: the CDF's tails, exp underflow
  Array g = Array::normal({64, 96}, gen);
  Array xd = x.to(DType::F64), gd = g.to(DType::F64);
  CHECK(allclose(gelu(x), gelu(xd), 1e-6, 1e-6));
  CHECK(allclose(gelu_backward(x, g), gelu_backward(xd, gd), 1e-5, 1e-6));
  CHECK(allclose(softmax(x, -1), softmax(xd, -1), 1e-5, 1e-7));
  CHECK(allclose(log_softmax(x, -1), log_softmax(xd, -1), 1e-5, 1e-5));
  Array targets = Array::from_vector(std::vector<int64_t>(64, 7), {64});
  CrossEntropyOut ce = cross_entropy(x, targets), ced = cross_entropy(xd, targets);
  CHECK(ce.loss.item() == Approx(ced.loss.item()).epsilon(1e-6));
  CHECK(allclose(cross_entropy_backward(x, targets, ce.lse, ce.count, 1.0),
                 cross_entropy_backward(xd, targets, ced.lse, ced.count, 1.0), 1e-5, 1e-8));
}

#if defined(__AVX512F__)  // where the GELU kernel hands normal_cdf 16 values at a time
TEST_CASE("fastmath: normal_cdf on a V16 gives each lane the float version's bits", "[fastmath]") {
  // Every 997th float bit pattern: both signs, subnormals, the clamp at |x| = 15.56, infinities and NaNs.
  int64_t differing = 0, n = 0;
  alignas(64) float x[16], cdf[16], gauss[16];
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 997 * 16) {
    for (int l = 0; l < 16; ++l) x[l] = std::bit_cast<float>(uint32_t(u + uint64_t(l) * 997));
    fastmath::V16 v;
    std::memcpy(&v, x, sizeof v);
    const fastmath::NormalCdfOf<fastmath::V16> c = fastmath::normal_cdf(v);
    std::memcpy(cdf, &c.cdf, sizeof cdf);
    std::memcpy(gauss, &c.gauss, sizeof gauss);
    for (int l = 0; l < 16; ++l, ++n) {
      const fastmath::NormalCdf f = fastmath::normal_cdf(x[l]);
      differing += std::bit_cast<uint32_t>(f.cdf) != std::bit_cast<uint32_t>(cdf[l]) ||
                   std::bit_cast<uint32_t>(f.gauss) != std::bit_cast<uint32_t>(gauss[l]);
    }
  }
  CHECK(n > 4000000);
  CHECK(differing == 0);
}
#endif
