// exp and the normal CDF for float kernels that the compiler can vectorise (GELU, softmax, cross-entropy).
//
// std::exp and std::erf are calls into libm, one element at a time: in a GELU over a (B*T, 4d) activation they
// were most of the op's time. The float versions below are plain arithmetic with no branches and no calls, so a
// loop over them becomes SIMD code (8 or 16 floats per instruction). exp stays within 1 ulp of the correctly
// rounded result, normal_cdf within 1e-6 relative (tests/tensor/test_fastmath.cpp sweeps both against libm in
// double); both keep NaN as NaN and give the same infinities and zeros. The double overload of exp is libm's
// itself, and float64 GELU calls std::erf: float64 is for gradcheck and the golden tests, where precision matters
// and speed does not.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace qkvlab::fastmath {

// always_inline: a call per element would stop the loop around it from vectorising (GCC judged these too big to
// inline inside the generic elementwise kernels, and the profile showed them as scalar calls).
//
// exp_clamped and normal_cdf are written once for a float and for a vector of floats, V16 (16 lanes, GCC/Clang
// vector types): the arithmetic operators, comparisons and ?: act lane by lane, and the few helpers below (bits,
// to_int, fma) have one overload each. The float versions are what the compiler vectorises inside ordinary loops;
// V16 is for loops that hand it 16 values at a time (GELU, tensor/ops_elementwise.cpp), where GCC's own
// vectorisation of the float code came out a ninth slower. Both are the same operations on every value, so the
// same bits (tests/tensor/test_fastmath.cpp compares them lane by lane, tests/autograd/test_gelu_linear.cpp the
// GELU kernels on both paths).

inline double exp(double x) { return std::exp(x); }

typedef float V16 __attribute__((vector_size(64)));
typedef int32_t I16 __attribute__((vector_size(64)));
template <class V> struct IntOf;                       // the integer lanes of V
template <> struct IntOf<float> { using type = int32_t; };
template <> struct IntOf<V16> { using type = I16; };
template <class V> using Int = typename IntOf<V>::type;
template <class V>
[[gnu::always_inline]] inline Int<V> bits(V x) { return std::bit_cast<Int<V>>(x); }
template <class V>
[[gnu::always_inline]] inline V from_bits(Int<V> i) { return std::bit_cast<V>(i); }
[[gnu::always_inline]] inline int32_t to_int(float x) { return static_cast<int32_t>(x); }  // toward 0
[[gnu::always_inline]] inline I16 to_int(V16 x) { return __builtin_convertvector(x, I16); }
[[gnu::always_inline]] inline float fma(float a, float b, float c) { return std::fma(a, b, c); }
[[gnu::always_inline]] inline V16 fma(V16 a, V16 b, V16 c) {
#if defined(__AVX512F__)  // (GCC vectorises the lane loop below only in some places it is inlined into)
  return reinterpret_cast<V16>(_mm512_fmadd_ps(reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b),
                                               reinterpret_cast<__m512>(c)));
#else
  for (int l = 0; l < 16; ++l) a[l] = std::fma(a[l], b[l], c[l]);
  return a;
#endif
}
template <class V>
[[gnu::always_inline]] inline V splat(float c) { return V{} + c; }  // c in every lane (0 + c is c exactly)

// e^x = 2^n * e^r with n = round(x / ln 2) and |r| <= ln(2)/2; e^r by its Taylor series to r^7 (the next term
// is below 6e-9, under half an ulp); 2^n is built from its bits, in two halves so that results below FLT_MIN
// (subnormals, x < -87.3) come out right too. xc must be a number in [-104, 89] (e^-104 rounds to 0, e^89 to inf).
template <class V>
[[gnu::always_inline]] inline V exp_clamped(V xc) {
  // n = round(x / ln 2): adding and removing 1.5 * 2^23 rounds to a whole number (std::floor would not vectorise).
  const V n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  // r = x - n ln2 in two pieces: n * 0.693359375 is exact (few bits), the small rest carries the precision.
  const V r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  V p = splat<V>(1.0f / 5040);
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const Int<V> ni = to_int(n), n1 = ni >> 1, n2 = ni - n1;  // each in [-75, 64]
  const V s1 = from_bits<V>((n1 + 127) << 23), s2 = from_bits<V>((n2 + 127) << 23);
  return p * s1 * s2;
}
[[gnu::always_inline]] inline float exp(float x) {
  return x != x ? x : exp_clamped(std::min(std::max(x, -104.0f), 89.0f));
}
// exp for x <= 0 (the density's e^(-x^2/2) in normal_cdf), without exp's NaN test and upper clamp, which cost
// about a sixth of GELU's time; the same bits for every x <= 0. A NaN argument gives 0, not NaN: the clamp turns
// it into -104 (a NaN must not reach exp_clamped's conversion to int, which is undefined); normal_cdf's NaN comes
// through its other terms.
template <class V>
[[gnu::always_inline]] inline V exp_nonpositive(V x) {
  return exp_clamped<V>(x >= -104.0f ? x : splat<V>(-104.0f));
}

// Phi(x), the standard normal CDF, and e^(-x^2/2) beside it: the two halves of GELU and its derivative, in one
// pass with one exp. With t = |x| / sqrt(2) and u = 1 / (1 + t/2), the tail Phi(-|x|) = erfc(t) / 2 =
// e^(-t^2) R(u) / 2, where R is one degree-10 polynomial for the whole range: a least-squares fit (relative error
// 3.9e-8 in exact arithmetic, 2.4e-7 evaluated in float) of erfc(t) e^(t^2) over t in [0, 11], made for this file
// with numpy from Python's math.erfc. Phi(x) is that tail for x < 0 and 1 minus it above.
// x^2 is split into its rounded value and the exact rest (one fma): rounding x^2 alone would put a relative
// error of x^2 * 6e-8 into e^(-x^2/2), 1.5e-5 at |x| = 15. Beyond |x| = 11 sqrt(2) the tail is 0 in float
// (e^-121), so |x| is clamped there: Phi(-inf) = 0 (GELU(-inf) = -inf * 0 = NaN, as with erf), Phi(+inf) = 1.
// NaN stays NaN. Measured against erfc in double by tests/tensor/test_fastmath.cpp.
template <class V>
struct NormalCdfOf {
  V cdf;    // Phi(x)
  V gauss;  // e^(-x^2/2)
};
using NormalCdf = NormalCdfOf<float>;
template <class V>
[[gnu::always_inline]] inline NormalCdfOf<V> normal_cdf(V x) {
  const V ax = from_bits<V>(bits(x) & 0x7fffffff);  // |x|
  const V a = 15.556349f < ax ? splat<V>(15.556349f) : ax;  // std::min(|x|, 15.556349): NaN stays NaN
  const V t = a * 0.70710678118654752f;
  const V u = 1.0f / (1.0f + 0.5f * t);
  V r = splat<V>(0.021344537142366428f);
  r = r * u - 0.17511143868559437f;
  r = r * u + 0.5582581815818464f;
  r = r * u - 0.8546175441098219f;
  r = r * u + 0.5877965638472473f;
  r = r * u - 0.19724365034390878f;
  r = r * u + 0.26463159430205474f;
  r = r * u + 0.22852425865385204f;
  r = r * u + 0.28449714442558194f;
  r = r * u + 0.2819144265024454f;
  r = r * u + 5.88725131905001e-06f;
  const V sq = a * a, sq_rest = fma(a, a, -sq);  // a^2 = sq + sq_rest exactly
  const V g = exp_nonpositive<V>(-0.5f * sq) * (1.0f - 0.5f * sq_rest);
  const V tail = 0.5f * g * r;  // Phi(-|x|)
  return {x < 0.0f ? tail : 1.0f - tail, g};
}
}  // namespace qkvlab::fastmath
