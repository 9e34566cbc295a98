// exp and erf for float kernels that the compiler can vectorise (GELU, softmax, cross-entropy).
//
// std::exp and std::erf are calls into libm, one element at a time: in a GELU over a (B*T, 4d) activation they
// were most of the op's time. The float versions below are plain arithmetic with no branches and no calls, so a
// loop over them becomes SIMD code (8 or 16 floats per instruction). They stay within a few ulp of the correctly
// rounded result (tests/tensor/test_fastmath.cpp sweeps them against std::exp / std::erf in double), keep NaN as
// NaN and give the same infinities and zeros. The double overloads are the libm functions themselves: float64 is
// for gradcheck and the golden tests, where precision matters and speed does not.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace qkvlab::fastmath {

// always_inline: a call per element would stop the loop around it from vectorising (GCC judged these too big to
// inline inside the generic elementwise kernels, and the profile showed them as scalar calls).

inline double exp(double x) { return std::exp(x); }
inline double erf(double x) { return std::erf(x); }

// e^x = 2^n * e^r with n = round(x / ln 2) and |r| <= ln(2)/2; e^r by its Taylor series to r^7 (the next term
// is below 6e-9, under half an ulp); 2^n is built from its bits, in two halves so that results below FLT_MIN
// (subnormals, x < -87.3) come out right too.
[[gnu::always_inline]] inline float exp(float x) {
  const float xc = x != x ? 0.0f : std::min(std::max(x, -104.0f), 89.0f);  // e^-104 rounds to 0, e^89 to inf
  // n = round(x / ln 2): adding and removing 1.5 * 2^23 rounds to a whole number (std::floor would not vectorise).
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  // r = x - n ln2 in two pieces: n * 0.693359375 is exact (few bits), the small rest carries the precision.
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t ni = static_cast<int32_t>(n), n1 = ni >> 1, n2 = ni - n1;  // each in [-75, 64]
  const float s1 = std::bit_cast<float>((n1 + 127) << 23), s2 = std::bit_cast<float>((n2 + 127) << 23);
  return x != x ? x : p * s1 * s2;
}

// erf(x) = x P(x^2) for |x| < 1, and 1 - e^(-x^2) Q(u) with u = 1 / (1 + |x|/2) above (odd in x). P and Q are
// least-squares fits (relative error 1.2e-9 and 3.7e-10 in exact arithmetic) made for this file with numpy from
// Python's math.erf / math.erfc. Beyond |x| = 4, erf(x) rounds to +-1 in float.
[[gnu::always_inline]] inline float erf(float x) {
  const float t = std::fabs(x);
  const float s = x * x;
  float p = 7.8542210914550603e-05f;
  p = p * s - 0.0008010311286395233f;
  p = p * s + 0.005188342501054502f;
  p = p * s - 0.026853820898600361f;
  p = p * s + 0.11283585412446093f;
  p = p * s - 0.37612625857504278f;
  p = p * s + 1.1283791657386193f;
  const float small = x * p;

  const float tc = std::min(t, 4.0f);
  const float u = 1.0f / (1.0f + 0.5f * tc);
  float q = 0.11901632588335909f;
  q = q * u - 0.47015269816326316f;
  q = q * u + 0.56187447420455583f;
  q = q * u - 0.10259354318016804f;
  q = q * u + 0.34736144060639484f;
  q = q * u + 0.25980157422243133f;
  q = q * u + 0.28489626311721156f;
  q = q * u - 0.00015318891398382814f;
  const float big = 1.0f - exp(-tc * tc) * q;  // erfc(t) = e^(-t^2) Q(u)
  return t < 1.0f ? small : (x < 0.0f ? -big : big);  // NaN: t < 1 is false, and big is NaN
}

}  // namespace qkvlab::fastmath
