// tensor/fastmath.h: the vectorisable float exp and erf against libm in double (rounded to float), swept densely
// over every range the kernels feed them, plus the special values (NaN, infinities, zeros, subnormals).
#include <catch2/catch.hpp>

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

// 2 ulp where the compiler fuses the polynomial's multiply-adds (gcc's default); 3 with clang, which fuses only
// within one expression: measured in the clang -O1 ASan build (x = -3.445, -0.99999, -0.9964).
TEST_CASE("fastmath: float erf is within 3 ulp of erf in double; odd, saturating, NaN-preserving", "[fastmath]") {
  auto f = [](float x) { return fastmath::erf(x); };
  auto ref = [](double x) { return std::erf(x); };
  CHECK(max_ulps(f, ref, -7.0f, 7.0f, 3e-7f) <= 3);  // ~14 million points over both branches and the join at 1
  CHECK(max_ulps(f, ref, -1e-3f, 1e-3f, 1e-6f) <= 3);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(fastmath::erf(0.0f) == 0.0f);
  CHECK(std::signbit(fastmath::erf(-0.0f)));
  CHECK(fastmath::erf(1e-40f) == static_cast<float>(std::erf(double(1e-40f))));  // subnormal in, subnormal out
  CHECK(fastmath::erf(inf) == 1.0f);
  CHECK(fastmath::erf(-inf) == -1.0f);
  CHECK(fastmath::erf(-2.5f) == -fastmath::erf(2.5f));
  CHECK(std::isnan(fastmath::erf(std::numeric_limits<float>::quiet_NaN())));
  CHECK(fastmath::erf(0.5) == std::erf(0.5));
}

TEST_CASE("fastmath: the float kernels that use it agree with float64 to float precision", "[fastmath]") {
  // gelu, its backward, softmax and cross-entropy in float32 against the same ops in float64 (libm).
  Generator gen(5);
  Array x = mul(Array::normal({64, 96}, gen), 3.0);  // values out to +-12: both erf branches, exp underflow
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
