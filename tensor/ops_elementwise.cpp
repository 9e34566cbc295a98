// Elementwise kernels: unary, binary with NumPy broadcasting, scalar, where/masked_fill, in-place updates and the
// comparison helpers for tests.
//
// Every kernel is one strided loop (tensor/iter.h) over the output shape with the inputs expanded to it (stride 0
// on broadcast dims). The loop hands over runs with their inner strides; a run whose strides are all 1 (or 0 for
// a broadcast operand) takes a plain pointer loop that the compiler vectorizes. Big arrays are split across
// OpenMP threads (detail::parallel_strided_loop).
#include <cmath>
#include <limits>
#include <type_traits>

#include "tensor/fastmath.h"
#include "tensor/ops.h"
#include "tensor/ops_detail.h"

namespace qkvlab {

using detail::check_defined;
using detail::check_same_dtype;
using detail::parallel_strided_loop;

namespace {

// ---------------------------------------------------------------- loop shapes

// out[i] = f(x[i]) over a run. flatten: f is inlined into the loop, which then vectorises (GCC left the bigger
// ones, gelu and its backward, as one call per element).
template <class T, class U, class F>
[[gnu::flatten]] inline void unary_run(U* __restrict o, const T* x, int64_t n, const std::array<int64_t, 2>& in, F& f) {
  if (in[0] == 1 && in[1] == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
  } else if (in[0] == 1 && in[1] == 0) {
    const U v = f(x[0]);
    for (int64_t i = 0; i < n; ++i) o[i] = v;
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * in[0]] = f(x[i * in[1]]);
  }
}

// out[i] = f(x[i], y[i]) over a run; the 0-stride cases are the broadcast ones (bias adds, scalar tensors).
template <class T, class F>
[[gnu::flatten]] inline void binary_run(T* __restrict o, const T* x, const T* y, int64_t n, const std::array<int64_t, 3>& in,
                       F& f) {
  if (in[0] == 1 && in[1] == 1 && in[2] == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
  } else if (in[0] == 1 && in[1] == 1 && in[2] == 0) {
    const T b = *y;
    for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], b);
  } else if (in[0] == 1 && in[1] == 0 && in[2] == 1) {
    const T a = *x;
    for (int64_t i = 0; i < n; ++i) o[i] = f(a, y[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * in[0]] = f(x[i * in[1]], y[i * in[2]]);
  }
}

// A new contiguous array: out = f(a), T -> T.
template <class F>
Array unary_op(const Array& a, const char* op, F f) {
  check_defined(a, op);
  return dispatch_float(a.dtype(), op, [&](auto z) {
    using T = decltype(z);
    Array out = Array::empty(a.shape(), a.dtype());
    T* o = out.data<T>();
    const T* x = a.data<T>();
    auto fn = [&](T v) -> T { return f(v); };
    parallel_strided_loop<2>(a.shape(), {&out.strides(), &a.strides()},
                             [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& in) {
                               unary_run(o + off[0], x + off[1], n, in, fn);
                             });
    return out;
  });
}

// A new contiguous array of the broadcast shape: out = f(a, b).
template <class F>
Array binary_op(const Array& a, const Array& b, const char* op, F f) {
  check_same_dtype(a, b, op);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  return dispatch_float(a.dtype(), op, [&](auto z) {
    using T = decltype(z);
    const Array ae = a.expand(shape), be = b.expand(shape);
    Array out = Array::empty(shape, a.dtype());
    T* o = out.data<T>();
    const T* x = ae.data<T>();
    const T* y = be.data<T>();
    auto fn = [&](T u, T v) -> T { return f(u, v); };
    parallel_strided_loop<3>(shape, {&out.strides(), &ae.strides(), &be.strides()},
                             [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& in) {
                               binary_run(o + off[0], x + off[1], y + off[2], n, in, fn);
                             });
    return out;
  });
}

// dst op= src in place on any (non-overlapping) strided dst; src broadcasts to dst's shape.
template <class F>
void inplace_op(Array& dst, const Array& src_in, const char* op, F f) {
  check_same_dtype(dst, src_in, op);
  for (size_t d = 0; d < dst.shape().size(); ++d)
    check(dst.strides()[d] != 0 || dst.shape()[d] <= 1, op, ": the destination ", dst.shape(),
          " is an expanded view (stride 0 on dim ", d, "); several elements share one memory location");
  Array src = src_in;
  check(src.ndim() <= dst.ndim(), op, ": cannot broadcast ", src.shape(), " to the destination ",
        dst.shape());
  for (int64_t i = 1; i <= src.ndim(); ++i) {
    const int64_t s = src.shape()[src.ndim() - i], d = dst.shape()[dst.ndim() - i];
    check(s == d || s == 1, op, ": cannot broadcast ", src.shape(), " to the destination ",
          dst.shape());
  }
  // A source that reads the destination's memory in another layout (add_(x, x.mT())) would see half-updated
  // values: read it from a copy.
  if (src.shares_storage(dst) && (src.strides() != dst.strides() || src.offset() != dst.offset() ||
                                  src.shape() != dst.shape()))
    src = src.clone();
  dispatch_float(dst.dtype(), op, [&](auto z) {
    using T = decltype(z);
    const Array se = src.expand(dst.shape());
    T* o = dst.data<T>();
    const T* y = se.data<T>();
    parallel_strided_loop<2>(dst.shape(), {&dst.strides(), &se.strides()},
                             [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& in) {
                               T* d = o + off[0];
                               const T* s = y + off[1];
                               if (in[0] == 1 && in[1] == 1) {
                                 for (int64_t i = 0; i < n; ++i) d[i] = f(d[i], s[i]);
                               } else if (in[0] == 1 && in[1] == 0) {
                                 const T v = *s;
                                 for (int64_t i = 0; i < n; ++i) d[i] = f(d[i], v);
                               } else {
                                 for (int64_t i = 0; i < n; ++i) d[i * in[0]] = f(d[i * in[0]], s[i * in[1]]);
                               }
                             });
  });
}

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

}  // namespace

// ---------------------------------------------------------------- unary

Array neg(const Array& a) {
  return unary_op(a, "neg", [](auto x) { return -x; });
}
Array exp(const Array& a) {
  return unary_op(a, "exp", [](auto x) { return fastmath::exp(x); });
}
Array log(const Array& a) {
  return unary_op(a, "log", [](auto x) { return std::log(x); });
}
Array sqrt(const Array& a) {
  return unary_op(a, "sqrt", [](auto x) { return std::sqrt(x); });
}
Array tanh(const Array& a) {
  return unary_op(a, "tanh", [](auto x) { return std::tanh(x); });
}
Array relu(const Array& a) {
  // x < 0 ? 0 : x keeps NaN as NaN (as PyTorch does).
  return unary_op(a, "relu", [](auto x) { return x < decltype(x)(0) ? decltype(x)(0) : x; });
}
// GELU(x) = x Phi(x). Float takes fastmath::normal_cdf (one polynomial and one exp for Phi and the density
// together, vectorised); float64 the erf form through libm, for gradcheck and the golden tests.
// The float value and slope from one normal_cdf, shared by gelu, gelu_backward and gelu_and_backward_ so that the
// three give the same bits by construction.
namespace {
// (V: a float, or fastmath::V16, 16 of them lane by lane)
template <class V>
[[gnu::always_inline]] inline V gelu_value(V x, const fastmath::NormalCdfOf<V>& c) { return x * c.cdf; }
// d/dx [x Phi(x)] = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi)
template <class V>
[[gnu::always_inline]] inline V gelu_slope(V x, const fastmath::NormalCdfOf<V>& c) {
  return c.cdf + x * (float(kInvSqrt2Pi) * c.gauss);
}
}  // namespace
Array gelu(const Array& a) {
  return unary_op(a, "gelu", [](auto x) {
    using T = decltype(x);
    if constexpr (std::is_same_v<T, float>) {
      return gelu_value(x, fastmath::normal_cdf(x));
    } else {
      return static_cast<T>(x * T(0.5) * (T(1) + std::erf(x * T(kInvSqrt2))));
    }
  });
}
Array gelu_backward(const Array& x, const Array& grad) {
  return binary_op(x, grad, "gelu_backward", [](auto v, auto g) {
    using T = decltype(v);
    if constexpr (std::is_same_v<T, float>) {
      return g * gelu_slope(v, fastmath::normal_cdf(v));
    } else {
      const T cdf = T(0.5) * (T(1) + std::erf(v * T(kInvSqrt2)));
      const T pdf = T(kInvSqrt2Pi) * std::exp(T(-0.5) * v * v);
      return g * (cdf + v * pdf);
    }
  });
}
namespace {
// gelu_and_backward_ and gelu_and_slope over one run: gelu_value and gelu_slope from one normal_cdf. d holds the
// incoming gradient and receives the outgoing one, or (kSlope) receives the slope itself and is not read.
// InPlace: v is also the input (x is not read).
template <bool InPlace, bool kSlope = false>
[[gnu::flatten]] inline void gelu_and_backward_run(float* __restrict v, float* d, const float* x, int64_t n,
                                                   const std::array<int64_t, 3>& in) {
  if constexpr (InPlace) x = v;
  auto at = [](float xv, float& vo, float& dio) {
    const fastmath::NormalCdf c = fastmath::normal_cdf(xv);
    vo = gelu_value(xv, c);
    if constexpr (kSlope) dio = gelu_slope(xv, c);
    else dio = dio * gelu_slope(xv, c);
  };
  if (in[0] == 1 && in[1] == 1 && in[2] == 1) {
    int64_t i = 0;
#if defined(__AVX512F__)
    // 16 values at a time as one fastmath::V16: GCC vectorises `at` itself with every lane's work masked and
    // blended around the clamp of |x| (~70 instructions for 16 values instead of ~60); (2048, 256): 380-410 ->
    // 340-355 us
    using fastmath::V16;
    for (; i + 16 <= n; i += 16) {
      V16 xv, dv;
      std::memcpy(&xv, x + i, sizeof xv);
      const fastmath::NormalCdfOf<V16> c = fastmath::normal_cdf(xv);
      const V16 vv = gelu_value(xv, c);
      if constexpr (kSlope) {
        dv = gelu_slope(xv, c);
      } else {
        std::memcpy(&dv, d + i, sizeof dv);
        dv = dv * gelu_slope(xv, c);
      }
      std::memcpy(v + i, &vv, sizeof vv);
      std::memcpy(d + i, &dv, sizeof dv);
    }
#endif
    for (; i < n; ++i) at(x[i], v[i], d[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) at(x[i * in[2]], v[i * in[0]], d[i * in[1]]);
  }
}
// Both entry points: the fused pass when grad (and, in place, x) is a contiguous float array of x's shape, with
// gelu(x) written into `value` (a new array, or x itself); false for the rest (float64 for gradcheck, broadcast or
// strided arrays), which take the two kernels one after the other.
template <bool InPlace>
bool gelu_and_backward_fused(const Array& x, Array& grad, Array& value) {
  check_same_dtype(x, grad, InPlace ? "gelu_and_backward_inplace_" : "gelu_and_backward_");
  if (x.dtype() != DType::F32 || x.shape() != grad.shape() || !grad.is_contiguous()) return false;
  if constexpr (InPlace) {
    if (!x.is_contiguous()) return false;
  } else {
    value = Array::empty(x.shape(), x.dtype());
  }
  float* v = value.data<float>();
  float* d = grad.data<float>();
  const float* xp = x.data<float>();
  parallel_strided_loop<3>(x.shape(), {&value.strides(), &grad.strides(), &x.strides()},
                           [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& in) {
                             gelu_and_backward_run<InPlace>(v + off[0], d + off[1], xp + off[2], n, in);
                           });
  return true;
}
}  // namespace
Array gelu_and_backward_(const Array& x, Array& grad) {
  Array value;
  if (gelu_and_backward_fused<false>(x, grad, value)) return value;
  grad = gelu_backward(x, grad);
  return gelu(x);
}
void gelu_and_backward_inplace_(Array& x, Array& grad) {
  if (gelu_and_backward_fused<true>(x, grad, x)) return;
  grad = gelu_backward(x, grad);
  x = gelu(x);
}
Array gelu_and_slope(const Array& x, Array& slope) {
  check_defined(x, "gelu_and_slope");
  if (x.dtype() != DType::F32) {  // float64: the two kernels (erf through libm), for gradcheck
    slope = gelu_backward(x, Array::ones(x.shape(), x.dtype()));
    return gelu(x);
  }
  Array value = Array::empty(x.shape(), x.dtype());
  slope = Array::empty(x.shape(), x.dtype());
  float* v = value.data<float>();
  float* d = slope.data<float>();
  const float* xp = x.data<float>();
  parallel_strided_loop<3>(x.shape(), {&value.strides(), &slope.strides(), &x.strides()},
                           [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& in) {
                             gelu_and_backward_run<false, true>(v + off[0], d + off[1], xp + off[2], n, in);
                           });
  return value;
}
Array abs(const Array& a) {
  return unary_op(a, "abs", [](auto x) { return std::abs(x); });
}
Array sign(const Array& a) {
  // 1, -1, or x itself for 0 (and NaN, which stays NaN).
  return unary_op(a, "sign", [](auto x) {
    using T = decltype(x);
    return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x);
  });
}
Array pow(const Array& a, double exponent) {
  if (exponent == 2.0) return unary_op(a, "pow", [](auto x) { return x * x; });
  if (exponent == 1.0) return unary_op(a, "pow", [](auto x) { return x; });
  if (exponent == 0.5) return unary_op(a, "pow", [](auto x) { return std::sqrt(x); });
  return unary_op(a, "pow", [exponent](auto x) {
    using T = decltype(x);
    return static_cast<T>(std::pow(x, static_cast<T>(exponent)));
  });
}
Array isfinite_mask(const Array& a) {
  return unary_op(a, "isfinite_mask", [](auto x) {
    using T = decltype(x);
    return std::isfinite(x) ? T(1) : T(0);
  });
}
bool all_finite(const Array& a) {
  check_defined(a, "all_finite");
  if (a.dtype() == DType::I64) return true;  // integers are always finite
  return dispatch_float(a.dtype(), "all_finite", [&](auto z) {
    using T = decltype(z);
    const T* x = a.data<T>();
    bool ok = true;
    strided_loop<1>(a.shape(), {&a.strides()}, [&](const std::array<int64_t, 1>& off, int64_t n, auto in) {
      // x - x is 0 for finite x and NaN for inf/NaN; summing keeps the loop branch-free.
      T acc = 0;
      for (int64_t i = 0; i < n; ++i) acc += x[off[0] + i * in[0]] * T(0);
      ok = ok && !std::isnan(acc);
    });
    return ok;
  });
}

// ---------------------------------------------------------------- binary

Array add(const Array& a, const Array& b) {
  return binary_op(a, b, "add", [](auto x, auto y) { return x + y; });
}
Array sub(const Array& a, const Array& b) {
  return binary_op(a, b, "sub", [](auto x, auto y) { return x - y; });
}
Array mul(const Array& a, const Array& b) {
  return binary_op(a, b, "mul", [](auto x, auto y) { return x * y; });
}
Array div(const Array& a, const Array& b) {
  return binary_op(a, b, "div", [](auto x, auto y) { return x / y; });
}
Array pow(const Array& a, const Array& b) {
  return binary_op(a, b, "pow", [](auto x, auto y) { return std::pow(x, y); });
}
// maximum/minimum propagate NaN from either side (as PyTorch does).
Array maximum(const Array& a, const Array& b) {
  return binary_op(a, b, "maximum", [](auto x, auto y) { return (x > y || x != x) ? x : y; });
}
Array minimum(const Array& a, const Array& b) {
  return binary_op(a, b, "minimum", [](auto x, auto y) { return (x < y || x != x) ? x : y; });
}
Array eq(const Array& a, const Array& b) {
  return binary_op(a, b, "eq", [](auto x, auto y) { return x == y ? decltype(x)(1) : decltype(x)(0); });
}
Array gt(const Array& a, const Array& b) {
  return binary_op(a, b, "gt", [](auto x, auto y) { return x > y ? decltype(x)(1) : decltype(x)(0); });
}
Array lt(const Array& a, const Array& b) {
  return binary_op(a, b, "lt", [](auto x, auto y) { return x < y ? decltype(x)(1) : decltype(x)(0); });
}

// ---------------------------------------------------------------- with a scalar

Array add(const Array& a, double b) {
  return unary_op(a, "add", [b](auto x) { return x + static_cast<decltype(x)>(b); });
}
Array mul(const Array& a, double b) {
  return unary_op(a, "mul", [b](auto x) { return x * static_cast<decltype(x)>(b); });
}
Array rsub(double a, const Array& b) {
  return unary_op(b, "rsub", [a](auto x) { return static_cast<decltype(x)>(a) - x; });
}
Array rdiv(double a, const Array& b) {
  return unary_op(b, "rdiv", [a](auto x) { return static_cast<decltype(x)>(a) / x; });
}

// ---------------------------------------------------------------- where / masked_fill

Array where(const Array& cond, const Array& a, const Array& b) {
  check_defined(cond, "where");
  check_same_dtype(a, b, "where");
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  return dispatch_float(a.dtype(), "where", [&](auto z) {
    using T = decltype(z);
    const Array ce = cond.expand(shape), ae = a.expand(shape), be = b.expand(shape);
    Array out = Array::empty(shape, a.dtype());
    T* o = out.data<T>();
    const T* x = ae.data<T>();
    const T* y = be.data<T>();
    dispatch_all(cond.dtype(), [&](auto zc) {
      using C = decltype(zc);
      const C* c = ce.data<C>();
      parallel_strided_loop<4>(
          shape, {&out.strides(), &ce.strides(), &ae.strides(), &be.strides()},
          [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& in) {
            T* op = o + off[0];
            const C* cp = c + off[1];
            const T* xp = x + off[2];
            const T* yp = y + off[3];
            if (in[0] == 1 && in[1] == 1 && in[2] == 1 && in[3] == 1) {
              for (int64_t i = 0; i < n; ++i) op[i] = cp[i] != C(0) ? xp[i] : yp[i];
            } else {
              for (int64_t i = 0; i < n; ++i) op[i * in[0]] = cp[i * in[1]] != C(0) ? xp[i * in[2]] : yp[i * in[3]];
            }
          });
    });
    return out;
  });
}

Array masked_fill(const Array& a, const Array& mask, double value) {
  check_defined(a, "masked_fill");
  check_defined(mask, "masked_fill");
  const Shape shape = broadcast_shapes(a.shape(), mask.shape(), "masked_fill");
  check(shape == a.shape(), "masked_fill: the mask ", mask.shape(), " does not broadcast to ",
        a.shape());
  return dispatch_float(a.dtype(), "masked_fill", [&](auto z) {
    using T = decltype(z);
    const Array me = mask.expand(shape);
    Array out = Array::empty(shape, a.dtype());
    T* o = out.data<T>();
    const T* x = a.data<T>();
    const T v = static_cast<T>(value);
    dispatch_all(mask.dtype(), [&](auto zm) {
      using M = decltype(zm);
      const M* m = me.data<M>();
      parallel_strided_loop<3>(shape, {&out.strides(), &a.strides(), &me.strides()},
                               [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& in) {
                                 T* op = o + off[0];
                                 const T* xp = x + off[1];
                                 const M* mp = m + off[2];
                                 if (in[0] == 1 && in[1] == 1 && in[2] == 1) {
                                   for (int64_t i = 0; i < n; ++i) op[i] = mp[i] != M(0) ? v : xp[i];
                                 } else {
                                   for (int64_t i = 0; i < n; ++i)
                                     op[i * in[0]] = mp[i * in[2]] != M(0) ? v : xp[i * in[1]];
                                 }
                               });
    });
    return out;
  });
}

// ---------------------------------------------------------------- in place

void add_(Array& dst, const Array& src) {
  inplace_op(dst, src, "add_", [](auto x, auto y) { return x + y; });
}

void mul_(Array& dst, const Array& src) {
  inplace_op(dst, src, "mul_", [](auto x, auto y) { return x * y; });
}

void axpy_(Array& dst, double alpha, const Array& src) {
  // alpha is applied in T, as a BLAS axpy would.
  dispatch_float(dst.defined() ? dst.dtype() : DType::F32, "axpy_", [&](auto z) {
    using T = decltype(z);
    const T al = static_cast<T>(alpha);
    inplace_op(dst, src, "axpy_", [al](T x, T y) { return x + al * y; });
  });
}

void mul_(Array& dst, double alpha) {
  check_defined(dst, "mul_");
  // Multiplying by a 0-d scalar through inplace_op reuses its checks and loop.
  inplace_op(dst, Array::scalar(alpha, dst.dtype()), "mul_", [](auto x, auto y) { return x * y; });
}

// ---------------------------------------------------------------- comparisons for tests

double max_abs_diff(const Array& a, const Array& b) {
  check_defined(a, "max_abs_diff");
  check_defined(b, "max_abs_diff");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), "max_abs_diff");
  // Any dtypes: compare in double. NaN anywhere (in either) gives NaN, so a test that checks "< tol" fails.
  const Array ad = a.to(DType::F64).expand(shape), bd = b.to(DType::F64).expand(shape);
  const double* x = ad.data<double>();
  const double* y = bd.data<double>();
  double m = 0.0;
  strided_loop<2>(shape, {&ad.strides(), &bd.strides()}, [&](auto off, int64_t n, auto in) {
    for (int64_t i = 0; i < n; ++i) {
      const double u = x[off[0] + i * in[0]], v = y[off[1] + i * in[1]];
      double d = u == v ? 0.0 : std::abs(u - v);  // equal infinities differ by 0, not NaN
      if (std::isnan(d) || d > m) m = d;
      if (std::isnan(m)) return;
    }
  });
  return m;
}

bool allclose(const Array& a, const Array& b, double rtol, double atol) {
  check_defined(a, "allclose");
  check_defined(b, "allclose");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), "allclose");
  // |a - b| <= atol + rtol * |b| elementwise, as torch.allclose; NaN is never close, equal infinities are.
  const Array ad = a.to(DType::F64).expand(shape), bd = b.to(DType::F64).expand(shape);
  const double* x = ad.data<double>();
  const double* y = bd.data<double>();
  bool ok = true;
  strided_loop<2>(shape, {&ad.strides(), &bd.strides()}, [&](auto off, int64_t n, auto in) {
    for (int64_t i = 0; i < n && ok; ++i) {
      const double u = x[off[0] + i * in[0]], v = y[off[1] + i * in[1]];
      if (u == v) continue;
      ok = std::abs(u - v) <= atol + rtol * std::abs(v);  // false for NaN and for inf vs finite
    }
  });
  return ok;
}

}  // namespace qkvlab
