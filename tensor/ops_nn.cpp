// Neural-network kernels that work row by row: softmax / log_softmax and their backwards, the attention softmax
// (scale + causal mask + softmax in one pass) and its backward, layer norm and its fused backward, cross-entropy
// and its backward.
//
// Each is a detail::for_each_row loop: one call per 1-D row along the normalised dim, with the row's element
// offset in every operand (per-row outputs such as mean, rstd and lse ride along with stride 0 on that dim).
// Rows may have any stride, so softmax over dim 0 of a transposed view needs no copy. Row sums are in double.
// The attention softmax is the exception: it needs each row's query index for the mask, so it walks contiguous
// (..., T, S) rows itself (for_each_attention_row_group) and packs a strided input first.
//
// The backward kernels here (softmax_backward, scaled_causal_softmax_backward, ...) are called by the autograd
// nodes in autograd/ops_nn.cpp (SoftmaxBackward, ScaledCausalSoftmaxBackward, ...), each beside its forward.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "tensor/fastmath.h"
#include "tensor/ops.h"
#include "tensor/ops_detail.h"
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace qkvlab {

using detail::check_defined;
using detail::check_same_dtype;

namespace {

// Max of a row, NaN-propagating: a NaN anywhere makes the max NaN (so the whole softmax row becomes NaN).
template <class T>
inline T row_max(const T* x, int64_t n, int64_t s) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i * s];
    if (v > m || v != v) m = v;
    if (m != m) break;
  }
  return m;
}

// softmax (kLog = false) or log_softmax (kLog = true) of one row.
template <bool kLog, class T>
inline void softmax_row(const T* x, int64_t sx, T* y, int64_t sy, int64_t n) {
  const T m = row_max(x, n, sx);
  if (m == -std::numeric_limits<T>::infinity()) {  // every entry is -inf (a fully masked row): see ops.h
    for (int64_t i = 0; i < n; ++i) y[i * sy] = kLog ? -std::numeric_limits<T>::infinity() : T(0);
    return;
  }
  // Three passes: the exponentials (into y), their sum (in double), the normalisation. In float each pass
  // vectorises (the sum with 8 partial sums); float64 keeps one running sum, the order the golden tests were
  // made with (a gradient that is zero up to rounding compares its rounding noise).
  for (int64_t i = 0; i < n; ++i) y[i * sy] = fastmath::exp(x[i * sx] - m);
  double s = 0.0;
  if constexpr (std::is_same_v<T, float>) {
    s = detail::sum_run(y, n, sy);
  } else {
    for (int64_t i = 0; i < n; ++i) s += y[i * sy];
  }
  if constexpr (kLog) {
    // (x - m) - log(s), not x - (m + log(s)): with |m| = 1e4 a float lse would lose 3 digits.
    const T ls = static_cast<T>(std::log(s));
    for (int64_t i = 0; i < n; ++i) y[i * sy] = (x[i * sx] - m) - ls;
  } else {
    const T inv = static_cast<T>(1.0 / s);
    for (int64_t i = 0; i < n; ++i) y[i * sy] *= inv;
  }
}

template <bool kLog>
Array softmax_impl(const Array& a, int64_t dim, const char* op) {
  check_defined(a, op);
  if (a.ndim() == 0) {  // a 0-d tensor is one row of one element
    wrap_dim(dim, 1, op);
    return softmax_impl<kLog>(a.reshape({1}), 0, op).reshape({});
  }
  const int64_t d = wrap_dim(dim, a.ndim(), op);
  return dispatch_float(a.dtype(), op, [&](auto z) {
    using T = decltype(z);
    Array out = Array::empty(a.shape(), a.dtype());
    const T* x = a.data<T>();
    T* y = out.data<T>();
    const int64_t n = a.shape()[d], sx = a.strides()[d], sy = out.strides()[d];
    detail::for_each_row<2>(a.shape(), d, {&a.strides(), &out.strides()}, [&](const std::array<int64_t, 2>& off) {
      if (sx == 1 && sy == 1) softmax_row<kLog>(x + off[0], 1, y + off[1], 1, n);  // unit strides: vectorizable
      else softmax_row<kLog>(x + off[0], sx, y + off[1], sy, n);
    });
    return out;
  });
}

// dx for softmax (kLog = false): y * (g - sum(g * y)); for log_softmax: g - exp(y) * sum(g).
template <bool kLog>
Array softmax_backward_impl(const Array& y, const Array& grad, int64_t dim, const char* op) {
  check_same_dtype(y, grad, op);
  check(y.shape() == grad.shape(), op, ": y ", y.shape(), " and grad ", grad.shape(),
        " differ in shape");
  if (y.ndim() == 0) {
    wrap_dim(dim, 1, op);
    return softmax_backward_impl<kLog>(y.reshape({1}), grad.reshape({1}), 0, op).reshape({});
  }
  const int64_t d = wrap_dim(dim, y.ndim(), op);
  return dispatch_float(y.dtype(), op, [&](auto z) {
    using T = decltype(z);
    Array out = Array::empty(y.shape(), y.dtype());
    const T* yp = y.data<T>();
    const T* gp = grad.data<T>();
    T* op_ = out.data<T>();
    const int64_t n = y.shape()[d], sy = y.strides()[d], sg = grad.strides()[d], so = out.strides()[d];
    detail::for_each_row<3>(y.shape(), d, {&y.strides(), &grad.strides(), &out.strides()},
                            [&](const std::array<int64_t, 3>& off) {
                              const T* yr = yp + off[0];
                              const T* gr = gp + off[1];
                              T* o = op_ + off[2];
                              double s = 0.0;
                              if constexpr (kLog) {
                                for (int64_t i = 0; i < n; ++i) s += static_cast<double>(gr[i * sg]);
                                const T st = static_cast<T>(s);
                                for (int64_t i = 0; i < n; ++i) o[i * so] = gr[i * sg] - fastmath::exp(yr[i * sy]) * st;
                              } else {
                                for (int64_t i = 0; i < n; ++i)
                                  s += static_cast<double>(gr[i * sg]) * static_cast<double>(yr[i * sy]);
                                const T st = static_cast<T>(s);
                                for (int64_t i = 0; i < n; ++i) o[i * so] = yr[i * sy] * (gr[i * sg] - st);
                              }
                            });
    return out;
  });
}

// ---- the attention softmax: softmax(masked_fill(scale * x, causal mask, -inf)) in one pass over each row ----
//
// Rows are contiguous runs of S keys; row r is query i = r % T. A causal row sees its first `visible` keys
// (visible_keys below); the rest are written as 0 and never read. Every step repeats the unfused chain's
// arithmetic in the same order (x * T(scale) rounded to T, the max, exp(z - max), the same sum, times 1/sum),
// so the result is bit for bit the chain's, and so is the backward's in float32 (in float64 its row sum may
// round differently, see tensor/ops.h): tests/tensor/test_ops_nn.cpp checks both.

// Keys query i of T may see among S: j <= i + (S - T), clamped to [0, S] (0 when T > S and i < T - S).
inline int64_t visible_keys(bool causal, int64_t i, int64_t T, int64_t S) {
  if (!causal) return S;
  return std::clamp<int64_t>(i + (S - T) + 1, 0, S);
}

// row_max of a contiguous row in 8 lane-wise running maxima (which vectorise; row_max's one running maximum, with
// its NaN test per element, is a chain of dependent compares): the same maximum, or NaN when the row has one. A
// tie of -0 and +0 may return either, and z - m, hence exp(z - m), is the same for both.
template <class T>
T row_max_lanes(const T* y, int64_t n) {
  // Written with GCC/Clang vector types: as plain loops over 8 lanes GCC compiled this to one scalar compare and
  // NaN test per element. A lane takes v where lane < v (a NaN never does); nan collects each lane's v != v.
  typedef T V __attribute__((vector_size(8 * sizeof(T))));
  using M = decltype(V{} != V{});  // the integer lane masks of a comparison
  constexpr T lowest = -std::numeric_limits<T>::infinity();
  V lane = V{} + lowest;
  M nan = M{};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    V v;
    std::memcpy(&v, y + j, sizeof v);
    nan |= v != v;
    const M take = lane < v;
    lane = (V)(((M)v & take) | ((M)lane & ~take));
  }
  bool any_nan = false;
  for (int l = 0; l < 8; ++l) any_nan |= nan[l] != 0;
  T m = lane[0];
  for (; j < n; ++j) {
    any_nan |= y[j] != y[j];
    m = m < y[j] ? y[j] : m;
  }
  if (any_nan) return std::numeric_limits<T>::quiet_NaN();
  for (int l = 1; l < 8; ++l) m = m < lane[l] ? lane[l] : m;
  return m;
}

// Rows go through the kernels below in groups of up to kGroup, phase by phase: each phase (scale and maximum,
// exp, the sum, the normalisation) runs over every row of the group before the next phase begins. One row of a
// short attention softmax is a chain of dependent steps (the maximum, exp's polynomial, the sum, 1 / sum: ~100
// cycles for 16 keys) and the backward's sum in double is one dependent add per key; rows side by side overlap
// their chains instead of waiting on each. Every row gets exactly the arithmetic it gets alone (the same bits).
constexpr int kGroup = 8;

template <class T>
void scaled_causal_softmax_rows(const T* x, T* y, const int64_t* n, int k, int64_t S, T scale) {
  constexpr T lowest = -std::numeric_limits<T>::infinity();
  T m[kGroup];
  for (int q = 0; q < k; ++q) {
    const T* xq = x + q * S;
    T* yq = y + q * S;
    for (int64_t j = n[q]; j < S; ++j) yq[j] = T(0);  // masked: exactly 0 (and the zeros the float sum reads)
    for (int64_t j = 0; j < n[q]; ++j) yq[j] = xq[j] * scale;  // as mul(x, scale): rounded to T
    m[q] = n[q] > 0 ? row_max_lanes(yq, n[q]) : lowest;
  }
  // With S a multiple of 16 (and causal rows of 32 keys or more), exp and the normalisation run over whole
  // blocks of 16 keys, the masked ones of the last block included and made 0 again: loops without a remainder,
  // which GCC compiles to plain 16-wide vector code (with n keys it added masked and scalar tails that cost more
  // than the extra lanes: rows of 64 keys 53-55 -> 46-47 ns, of 128 79-83 -> 71; rows of 16 measured slower).
  // Visible keys get the same arithmetic either way.
  constexpr int64_t kLanes = 16;
  const bool blocks = S % kLanes == 0 && S > kLanes;
  auto padded = [&](int64_t len) { return blocks ? (len + kLanes - 1) / kLanes * kLanes : len; };
  for (int q = 0; q < k; ++q) {
    T* yq = y + q * S;
    if (m[q] == lowest) {  // every visible score is -inf (or none is visible): the row is all 0, as softmax
      for (int64_t j = 0; j < n[q]; ++j) yq[j] = T(0);
      continue;
    }
    const T mq = m[q];
    const int64_t w = padded(n[q]);
    if (blocks) {
      for (int64_t j = 0; j < w; j += kLanes)
        for (int64_t l = 0; l < kLanes; ++l) yq[j + l] = fastmath::exp(yq[j + l] - mq);
      for (int64_t j = n[q]; j < w; ++j) yq[j] = T(0);
    } else {
      for (int64_t j = 0; j < n[q]; ++j) yq[j] = fastmath::exp(yq[j] - mq);
    }
  }
  T inv[kGroup];
  for (int q = 0; q < k; ++q) {
    if (m[q] == lowest) continue;
    const T* yq = y + q * S;
    double s = 0.0;
    if constexpr (std::is_same_v<T, float>) {
      // softmax sums the whole row with 8 partial sums; the masked entries it adds are zeros. Summing up to the
      // next multiple of 8 (those zeros included) puts every visible element in the same partial sum as there.
      s = detail::sum_run(yq, std::min<int64_t>(S, (n[q] + 7) / 8 * 8), 1);
    } else {
      for (int64_t j = 0; j < n[q]; ++j) s += yq[j];
    }
    inv[q] = static_cast<T>(1.0 / s);
  }
  for (int q = 0; q < k; ++q) {
    if (m[q] == lowest) continue;
    T* yq = y + q * S;
    const T iq = inv[q];
    if (blocks) {  // the masked keys of the last block are 0, and stay 0 (or become NaN with iq, as below)
      for (int64_t j = 0; j < padded(n[q]); j += kLanes)
        for (int64_t l = 0; l < kLanes; ++l) yq[j + l] *= iq;
    } else {
      for (int64_t j = 0; j < n[q]; ++j) yq[j] *= iq;
    }
    // A NaN (or +inf) among the visible scores makes the sum NaN; softmax then makes the whole row NaN, masked
    // entries included (0 * NaN), and so do we.
    if (inv[q] != inv[q])
      for (int64_t j = n[q]; j < S; ++j) yq[j] = inv[q];
  }
}

// scaled_causal_softmax_rows for k float rows of exactly 16 keys, every one visible (no mask: the synthetic tasks'
// encoder at length 16), each row held in one 16-lane vector. With the row length known only at run time the
// generic loops compiled to masked and scalar code (the maximum lane by lane, the sum's halves through memory):
// ~23 ns a row, now ~15. The same operations on each value in the same order (the same bits): the product with
// scale, the maximum (a tree; any order gives the same maximum), fastmath::exp (the same inline function, here
// vectorised over the rows), the sum in double with sum_run's 8 partial sums (lane l plus lane l + 8, then the
// same tree), 1 / sum, the products. Returns false, having written nothing, when a row, once scaled, holds a NaN or
// an inf: the generic code then takes the group (and gives softmax's NaN rows).
bool softmax_rows16(const float* x, float* y, int k, float scale) {
  typedef float F16 __attribute__((vector_size(64)));
  typedef float F8 __attribute__((vector_size(32)));
  typedef float F4 __attribute__((vector_size(16)));
  typedef double D8 __attribute__((vector_size(64)));
  typedef double D4 __attribute__((vector_size(32)));
  alignas(64) float e[kGroup][16];
  float m[kGroup];
  for (int q = 0; q < k; ++q) {
    F16 v;
    std::memcpy(&v, x + q * 16, sizeof v);
    v *= scale;
    // v * 0 is 0 in every lane unless one holds a NaN or an inf: then the sum of the lanes is NaN
    const F16 z = v * 0.0f;
    const F8 z8 = __builtin_shufflevector(z, z, 0, 1, 2, 3, 4, 5, 6, 7) +
                  __builtin_shufflevector(z, z, 8, 9, 10, 11, 12, 13, 14, 15);
    const F4 z4 = __builtin_shufflevector(z8, z8, 0, 1, 2, 3) + __builtin_shufflevector(z8, z8, 4, 5, 6, 7);
    if ((z4[0] + z4[1]) + (z4[2] + z4[3]) != 0.0f) return false;
    // the maximum, as a tree of lane-wise maxima
    const F8 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
    const F8 hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    const F8 a8 = lo > hi ? lo : hi;
    const F4 l4 = __builtin_shufflevector(a8, a8, 0, 1, 2, 3), h4 = __builtin_shufflevector(a8, a8, 4, 5, 6, 7);
    const F4 a4 = l4 > h4 ? l4 : h4;
    const float a2 = a4[0] > a4[1] ? a4[0] : a4[1], b2 = a4[2] > a4[3] ? a4[2] : a4[3];
    m[q] = a2 > b2 ? a2 : b2;
    const F16 t = v - m[q];
    std::memcpy(e[q], &t, sizeof t);
  }
  for (int q = 0; q < k; ++q)
    for (int l = 0; l < 16; ++l) e[q][l] = fastmath::exp(e[q][l]);
  for (int q = 0; q < k; ++q) {
    F16 ev;
    std::memcpy(&ev, e[q], sizeof ev);
    // sum_run over 16 values: acc[l] = (0 + e[l]) + e[l + 8], then ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    const D8 acc = __builtin_convertvector(__builtin_shufflevector(ev, ev, 0, 1, 2, 3, 4, 5, 6, 7), D8) +
                   __builtin_convertvector(__builtin_shufflevector(ev, ev, 8, 9, 10, 11, 12, 13, 14, 15), D8);
    const D4 pair = __builtin_shufflevector(acc, acc, 0, 2, 4, 6) + __builtin_shufflevector(acc, acc, 1, 3, 5, 7);
    const double s = (pair[0] + pair[1]) + (pair[2] + pair[3]);
    const F16 r = ev * static_cast<float>(1.0 / s);
    std::memcpy(y + q * 16, &r, sizeof r);
  }
  return true;
}

// d x = scale * p * (g - sum_j g_j p_j) on the visible keys, 0 on the masked ones (neither p nor g read there).
// The sums in double, one running sum a row in key order, as softmax_backward; the group's rows side by side.
// kS > 0: rows of exactly kS keys, all visible (S = kS and every n(q) = kS), fixed when compiling (the
// synthetic tasks' rows of 16: loops without a count to test; the same arithmetic).
template <class T, int kS = 0>
void scaled_causal_softmax_backward_rows(const T* p, const T* g, T* dx, const int64_t* n_, int k, int64_t S_,
                                         T scale) {
  const int64_t S = kS > 0 ? kS : S_;
  auto n = [&](int q) { return kS > 0 ? int64_t(kS) : n_[q]; };
  double s[kGroup] = {};
  int64_t common = S;
  for (int q = 0; q < k; ++q) common = std::min(common, n(q));
  for (int64_t j = 0; j < common; ++j)
    for (int q = 0; q < k; ++q) s[q] += static_cast<double>(g[q * S + j]) * static_cast<double>(p[q * S + j]);
  for (int q = 0; q < k; ++q)
    for (int64_t j = common; j < n(q); ++j)
      s[q] += static_cast<double>(g[q * S + j]) * static_cast<double>(p[q * S + j]);
  for (int q = 0; q < k; ++q) {
    const T st = static_cast<T>(s[q]);
    const T* pq = p + q * S;
    const T* gq = g + q * S;
    T* dq = dx + q * S;
    // (p * (g - st)) rounded to T, then times scale: the chain's softmax_backward then mul(scalar) backward.
    for (int64_t j = 0; j < n(q); ++j) {
      const T d = pq[j] * (gq[j] - st);
      dq[j] = d * scale;
    }
    for (int64_t j = n(q); j < S; ++j) dq[j] = T(0);
  }
}

// scaled_causal_softmax_backward_rows<float, 16> for a whole group of 8 rows, with each row's sum over its 16 keys
// done for the 8 rows side by side: the products g p in double (exact: a float times a float fits in a double),
// turned so that each vector holds one key of the 8 rows (two 8 x 8 transposes), then added key after key from 0
// as the row loop adds them: the same sums, the same bits. (The row loop's sums are scalar: a conversion pair and
// an add per key and row, ~40 cycles a row; these ~15.) dx may be g.
void softmax_backward_rows16x8(const float* p, const float* g, float* dx, float scale) {
  typedef float F16 __attribute__((vector_size(64)));
  typedef float F8 __attribute__((vector_size(32)));
  using detail::D8;
  using detail::widen8;
  D8 lo[8], hi[8];  // lo[q]: row q's products for keys 0-7; hi[q]: keys 8-15
  for (int q = 0; q < 8; ++q) {
    F16 gv, pv;
    std::memcpy(&gv, g + q * 16, sizeof gv);
    std::memcpy(&pv, p + q * 16, sizeof pv);
    lo[q] = widen8(__builtin_shufflevector(gv, gv, 0, 1, 2, 3, 4, 5, 6, 7)) *
            widen8(__builtin_shufflevector(pv, pv, 0, 1, 2, 3, 4, 5, 6, 7));
    hi[q] = widen8(__builtin_shufflevector(gv, gv, 8, 9, 10, 11, 12, 13, 14, 15)) *
            widen8(__builtin_shufflevector(pv, pv, 8, 9, 10, 11, 12, 13, 14, 15));
  }
  // 8 x 8 transpose: t[j] lane q = m[q] lane j, in three rounds of pairs (1, 2, then 4 apart)
  auto transpose = [](D8 (&m)[8]) {
    D8 a[8], b[8];
    for (int i = 0; i < 8; i += 2) {
      a[i] = __builtin_shufflevector(m[i], m[i + 1], 0, 8, 2, 10, 4, 12, 6, 14);
      a[i + 1] = __builtin_shufflevector(m[i], m[i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
      for (int h = 0; h < 2; ++h) {
        b[i + h] = __builtin_shufflevector(a[i + h], a[i + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        b[i + h + 2] = __builtin_shufflevector(a[i + h], a[i + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
      }
    for (int h = 0; h < 4; ++h) {
      m[h] = __builtin_shufflevector(b[h], b[h + 4], 0, 1, 2, 3, 8, 9, 10, 11);
      m[h + 4] = __builtin_shufflevector(b[h], b[h + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
  };
  transpose(lo);
  transpose(hi);
  D8 s = D8{};
  for (int j = 0; j < 8; ++j) s += lo[j];
  for (int j = 0; j < 8; ++j) s += hi[j];
  const F8 st = __builtin_convertvector(s, F8);
  for (int q = 0; q < 8; ++q) {
    F16 gv, pv;
    std::memcpy(&gv, g + q * 16, sizeof gv);
    std::memcpy(&pv, p + q * 16, sizeof pv);
    const F16 d = pv * (gv - st[q]);
    const F16 out = d * scale;
    std::memcpy(dx + q * 16, &out, sizeof out);
  }
}

// Calls rows(r, n, k) for groups of k <= kGroup consecutive rows of a (..., T, S) array, the first at row r;
// n[q] is the number of keys row r + q sees. Groups run in parallel (each row is written by one thread only, and
// no row depends on the split: results are the same on any thread count).
template <class Rows>
void for_each_attention_row_group(const Shape& shape, bool causal, Rows&& rows) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  const int64_t S = shape[nd - 1], T = nd >= 2 ? shape[nd - 2] : 1;
  const int64_t n_rows = S == 0 ? 0 : shape_numel(shape) / S;
  const int64_t chunks = detail::chunk_count(n_rows, S * 4, n_rows);
#pragma omp parallel for num_threads(num_threads()) schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = n_rows * (c + 1) / chunks;
    for (int64_t r = n_rows * c / chunks; r < end; r += kGroup) {
      const int k = int(std::min<int64_t>(kGroup, end - r));
      int64_t n[kGroup];
      for (int q = 0; q < k; ++q) n[q] = visible_keys(causal, (r + q) % T, T, S);
      rows(r, n, k);
    }
  }
}

void check_attention_softmax_args(const Array& x, bool causal, const char* op) {
  check_defined(x, op);
  check(x.ndim() >= (causal ? 2 : 1), op, ": expected ", causal ? "(..., T, S) scores (at least 2 dims)" :
        "at least 1 dim", ", got shape ", x.shape());
}

void check_vector_param(const Array& p, const Array& x, int64_t c, const char* op, const char* name) {
  if (!p.defined()) return;
  check(p.dtype() == x.dtype(), op, ": ", name, " is ", dtype_name(p.dtype()), " but x is ", dtype_name(x.dtype()));
  check(p.ndim() == 1 && p.shape()[0] == c, op, ": expected ", name, " of shape (", c, ",) for x ",
        x.shape(), ", got ", p.shape());
}

// Sums grad-like (..., C) over every dim but the last: (C,).
Array sum_leading(const Array& a) {
  if (a.ndim() == 1) return a.clone();
  std::vector<int64_t> dims;
  for (int64_t d = 0; d + 1 < a.ndim(); ++d) dims.push_back(d);
  return sum(a, dims, false);
}

}  // namespace

// ---------------------------------------------------------------- softmax family

Array softmax(const Array& a, int64_t dim) { return softmax_impl<false>(a, dim, "softmax"); }
Array log_softmax(const Array& a, int64_t dim) { return softmax_impl<true>(a, dim, "log_softmax"); }
Array softmax_backward(const Array& y, const Array& grad, int64_t dim) {
  return softmax_backward_impl<false>(y, grad, dim, "softmax_backward");
}
Array log_softmax_backward(const Array& y, const Array& grad, int64_t dim) {
  return softmax_backward_impl<true>(y, grad, dim, "log_softmax_backward");
}

namespace {
// Both softmax kernels read each row before writing it, at the same or a later index: out may be the input.
void causal_softmax_into(const Array& x, Array& out, double scale, bool causal, const char* op) {
  dispatch_float(x.dtype(), op, [&](auto z) {
    using T = decltype(z);
    const T* xp = x.data<T>();
    T* yp = out.data<T>();
    const int64_t S = x.shape().back();
    const T sc = static_cast<T>(scale);
    const bool rows16 = std::is_same_v<T, float> && !causal && S == 16;
    for_each_attention_row_group(x.shape(), causal, [&](int64_t r, const int64_t* n, int k) {
      if constexpr (std::is_same_v<T, float>)
        if (rows16 && softmax_rows16(xp + r * S, yp + r * S, k, sc)) return;
      scaled_causal_softmax_rows(xp + r * S, yp + r * S, n, k, S, sc);
    });
  });
}

void causal_softmax_backward_into(const Array& p, const Array& grad, Array& out, double scale, bool causal,
                                  const char* op) {
  dispatch_float(p.dtype(), op, [&](auto z) {
    using T = decltype(z);
    const T* pp = p.data<T>();
    const T* gp = grad.data<T>();
    T* dp = out.data<T>();
    const int64_t S = p.shape().back();
    const T sc = static_cast<T>(scale);
    const bool rows16 = !causal && S == 16;  // rows of 16 keys, all visible (as in causal_softmax_into)
    for_each_attention_row_group(p.shape(), causal, [&](int64_t r, const int64_t* n, int k) {
      if constexpr (std::is_same_v<T, float>)
        if (rows16 && k == 8) return softmax_backward_rows16x8(pp + r * S, gp + r * S, dp + r * S, sc);
      if (rows16) scaled_causal_softmax_backward_rows<T, 16>(pp + r * S, gp + r * S, dp + r * S, n, k, S, sc);
      else scaled_causal_softmax_backward_rows(pp + r * S, gp + r * S, dp + r * S, n, k, S, sc);
    });
  });
}

void check_softmax_backward_args(const Array& p, const Array& grad, bool causal, const char* op) {
  check_same_dtype(p, grad, op);
  check(p.shape() == grad.shape(), op, ": p ", p.shape(), " and grad ", grad.shape(), " differ in shape");
  check_attention_softmax_args(p, causal, op);
}
}  // namespace

Array scaled_causal_softmax(const Array& x, double scale, bool causal) {
  const char* op = "scaled_causal_softmax";
  check_attention_softmax_args(x, causal, op);
  const Array xc = x.contiguous();  // the kernel walks contiguous rows; a strided view is packed once
  Array out = Array::empty(x.shape(), x.dtype());
  causal_softmax_into(xc, out, scale, causal, op);
  return out;
}

void scaled_causal_softmax_(Array& x, double scale, bool causal) {
  const char* op = "scaled_causal_softmax_";
  check_attention_softmax_args(x, causal, op);
  check(x.is_contiguous(), op, ": expected a contiguous array, got strides ", x.strides());
  causal_softmax_into(x, x, scale, causal, op);
}

Array scaled_causal_softmax_backward(const Array& p, const Array& grad, double scale, bool causal) {
  const char* op = "scaled_causal_softmax_backward";
  check_softmax_backward_args(p, grad, causal, op);
  const Array pc = p.contiguous(), gc = grad.contiguous();
  Array out = Array::empty(p.shape(), p.dtype());
  causal_softmax_backward_into(pc, gc, out, scale, causal, op);
  return out;
}

void scaled_causal_softmax_backward_(const Array& p, Array& grad, double scale, bool causal) {
  const char* op = "scaled_causal_softmax_backward_";
  check_softmax_backward_args(p, grad, causal, op);
  check(grad.is_contiguous(), op, ": expected a contiguous grad, got strides ", grad.strides());
  causal_softmax_backward_into(p.contiguous(), grad, grad, scale, causal, op);
}

// ---------------------------------------------------------------- layer norm

namespace {

// A row sum in double of term(0) ... term(n-1). Float rows take 8 partial sums, as detail::sum_run does: one
// running sum is a chain of dependent additions that the compiler may not reorder (no -ffast-math), one add per 4
// cycles; 8 independent chains vectorise. Float64 keeps one running sum, the order the golden tests were made with.
// row_sums: Terms sums side by side in one pass over the row (each in the order row_sum would take), so that the
// backward reads its row once for both of its sums.
inline double sum_partials(const double (&a)[8]) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }
template <class T, class... Term>
inline std::array<double, sizeof...(Term)> row_sums(int64_t n, Term... term) {
  constexpr size_t K = sizeof...(Term);
  if constexpr (std::is_same_v<T, float>) {
    double a[K][8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) {
        size_t k = 0;
        ((a[k++][j] += term(i + j)), ...);
      }
    for (; i < n; ++i) {
      size_t k = 0;
      ((a[k++][0] += term(i)), ...);
    }
    std::array<double, K> out;
    for (size_t k = 0; k < K; ++k) out[k] = sum_partials(a[k]);
    return out;
  } else {
    std::array<double, K> out{};
    for (int64_t i = 0; i < n; ++i) {
      size_t k = 0;
      ((out[k++] += term(i)), ...);
    }
    return out;
  }
}
template <class T, class Term>
inline double row_sum(int64_t n, Term term) {
  return row_sums<T>(n, term)[0];
}

// The totals of four float rows' 8 partial sums side by side, [sum_partials(a0), ..., sum_partials(a3)] as one
// vector: the same additions in the same order, the rows in the lanes (pairs within each row, then pairs of pairs,
// then the two halves), so that the rows' divisions and square roots after them are vector instructions too.
typedef double D4 __attribute__((vector_size(32)));
[[gnu::always_inline]] inline D4 totals4(const detail::D8& a0, const detail::D8& a1, const detail::D8& a2,
                                        const detail::D8& a3) {
  using detail::D8;
  const D8 x = __builtin_shufflevector(a0, a1, 0, 2, 4, 6, 8, 10, 12, 14) +
               __builtin_shufflevector(a0, a1, 1, 3, 5, 7, 9, 11, 13, 15);  // a0's lane pairs, then a1's
  const D8 y = __builtin_shufflevector(a2, a3, 0, 2, 4, 6, 8, 10, 12, 14) +
               __builtin_shufflevector(a2, a3, 1, 3, 5, 7, 9, 11, 13, 15);
  const D8 z = __builtin_shufflevector(x, y, 0, 2, 4, 6, 8, 10, 12, 14) +
               __builtin_shufflevector(x, y, 1, 3, 5, 7, 9, 11, 13, 15);  // pairs of pairs, two a row
  return __builtin_shufflevector(z, z, 0, 2, 4, 6) + __builtin_shufflevector(z, z, 1, 3, 5, 7);
}
[[gnu::always_inline]] inline D4 sqrt4(D4 v) {  // correctly rounded, as std::sqrt
#if defined(__AVX__)
  return reinterpret_cast<D4>(_mm256_sqrt_pd(reinterpret_cast<__m256d>(v)));
#else
  for (int l = 0; l < 4; ++l) v[l] = std::sqrt(v[l]);
  return v;
#endif
}

// y = (x - mu) * r [* w] [+ b] over one row: the last step of layer_norm_row and layer_norm_rows4.
template <bool kUnit, class T>
[[gnu::always_inline]] inline void layer_norm_store(const T* x, int64_t sx, T* y, const T* w, int64_t sw, const T* b,
                                                    int64_t sb, int64_t c, T mu, T r) {
  if constexpr (kUnit) sx = sw = sb = 1;
  for (int64_t i = 0; i < c; ++i) {
    T h = (x[i * sx] - mu) * r;
    if (w) h *= w[i * sw];
    if (b) h += b[i * sb];
    y[i] = h;
  }
}

// One row of layer norm: y = (x - mean) * rstd [* w] [+ b]; mean and rstd are stored for the backward.
// kUnit: every stride is 1 (the normalised dim is the last and dense, as in every model), fixed at compile time so
// that the loops vectorise; the other instantiation takes any strides.
template <bool kUnit, class T>
void layer_norm_row(const T* x, int64_t sx, T* y, const T* w, int64_t sw, const T* b, int64_t sb, int64_t c,
                    double eps, T* mean_out, T* rstd_out) {
  if constexpr (kUnit) sx = sw = sb = 1;
  // Shifted by the first element: exact for a constant row (mean = x, var = 0, so y = bias with no rounding
  // noise), and more accurate when |mean| >> std.
  const double shift = static_cast<double>(x[0]);
  const double mean =
      shift + row_sum<T>(c, [&](int64_t i) { return static_cast<double>(x[i * sx]) - shift; }) / double(c);
  const double var = row_sum<T>(c, [&](int64_t i) {
                       const double d = static_cast<double>(x[i * sx]) - mean;
                       return d * d;
                     }) / double(c);
  const double rstd = 1.0 / std::sqrt(var + eps);
  *mean_out = static_cast<T>(mean);
  *rstd_out = static_cast<T>(rstd);
  layer_norm_store<kUnit>(x, sx, y, w, sw, b, sb, c, static_cast<T>(mean), static_cast<T>(rstd));
}

// Four float rows of layer_norm_row<true> side by side, the same operations on each row in the same order (the
// same bits). One row is a chain of dependent steps (8 partial sums, their total, a division, again for the
// variance, a square root and a division), ~130 cycles of latency for 64 values; four rows interleaved overlap
// their chains, and their totals, divisions and square roots are one vector instruction for the four (totals4).
// Row q is at x + q * sx_row, y + q * sy_row, its mean and rstd at q * s_stat.
void layer_norm_rows4(const float* x, int64_t sx_row, float* y, int64_t sy_row, const float* w, const float* b,
                      int64_t c, double eps, float* mean_out, float* rstd_out, int64_t s_stat) {
  using detail::D8;
  using detail::load_widen8;
  // Lane j of a[q] is row q's partial sum j of row_sums.
  D4 shift;
  D8 a[4];
  for (int q = 0; q < 4; ++q) shift[q] = static_cast<double>(x[q * sx_row]), a[q] = D8{};
  int64_t i = 0;
  for (; i + 8 <= c; i += 8)
    for (int q = 0; q < 4; ++q) a[q] += load_widen8(x + q * sx_row + i) - shift[q];
  for (; i < c; ++i)
    for (int q = 0; q < 4; ++q) a[q][0] += static_cast<double>(x[q * sx_row + i]) - shift[q];
  const D4 mean = shift + totals4(a[0], a[1], a[2], a[3]) / double(c);
  for (int q = 0; q < 4; ++q) a[q] = D8{};
  for (i = 0; i + 8 <= c; i += 8)
    for (int q = 0; q < 4; ++q) {
      const D8 d = load_widen8(x + q * sx_row + i) - mean[q];
      a[q] += d * d;
    }
  for (; i < c; ++i)
    for (int q = 0; q < 4; ++q) {
      const double d = static_cast<double>(x[q * sx_row + i]) - mean[q];
      a[q][0] += d * d;
    }
  const D4 rstd = 1.0 / sqrt4(totals4(a[0], a[1], a[2], a[3]) / double(c) + eps);
  for (int q = 0; q < 4; ++q) {
    mean_out[q * s_stat] = static_cast<float>(mean[q]);
    rstd_out[q * s_stat] = static_cast<float>(rstd[q]);
    layer_norm_store<true>(x + q * sx_row, 1, y + q * sy_row, w, 1, b, 1, c, static_cast<float>(mean[q]),
                           static_cast<float>(rstd[q]));
  }
}

// One row of the backward: dxhat = g * w;  dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), and
// gxhat = g * xhat (summed over rows for dweight) when asked for. Strides as in layer_norm_row; dx and gxhat are
// contiguous.
// dx (and gxhat) of one row from the means of its two row sums, m1 = (T)(sum dxhat / c) and
// m2 = (T)(sum dxhat * xhat / c): the last step of layer_norm_backward_row and layer_norm_backward_rows4.
template <bool kUnit, class T>
[[gnu::always_inline]] inline void layer_norm_backward_store(const T* g, int64_t sg, const T* x, int64_t sx,
                                                             const T* w, int64_t sw, T mu, T r, int64_t c, T m1, T m2,
                                                             T* dx, T* gxhat) {
  if constexpr (kUnit) sg = sx = sw = 1;
  auto xhat = [&](int64_t i) { return (x[i * sx] - mu) * r; };
  auto dxhat = [&](int64_t i) { return w ? g[i * sg] * w[i * sw] : g[i * sg]; };
  if (gxhat) {
    for (int64_t i = 0; i < c; ++i) {
      const T xh = xhat(i);
      dx[i] = r * (dxhat(i) - m1 - xh * m2);
      gxhat[i] = g[i * sg] * xh;
    }
  } else {
    for (int64_t i = 0; i < c; ++i) dx[i] = r * (dxhat(i) - m1 - xhat(i) * m2);
  }
}

template <bool kUnit, class T>
void layer_norm_backward_row(const T* g, int64_t sg, const T* x, int64_t sx, const T* w, int64_t sw, T mu, T r,
                             int64_t c, T* dx, T* gxhat) {
  if constexpr (kUnit) sg = sx = sw = 1;
  auto xhat = [&](int64_t i) { return (x[i * sx] - mu) * r; };
  auto dxhat = [&](int64_t i) { return w ? g[i * sg] * w[i * sw] : g[i * sg]; };
  const auto [s1, s2] = row_sums<T>(
      c, [&](int64_t i) { return static_cast<double>(dxhat(i)); },
      [&](int64_t i) { return static_cast<double>(dxhat(i)) * static_cast<double>(xhat(i)); });
  layer_norm_backward_store<kUnit>(g, sg, x, sx, w, sw, mu, r, c, static_cast<T>(s1 / double(c)),
                                   static_cast<T>(s2 / double(c)), dx, gxhat);
}

// Four float rows of layer_norm_backward_row<true> side by side, as layer_norm_rows4 does for the forward: the
// two row sums of each row in 8 lanes of doubles (the same partial sums, added in the same order), the rows'
// chains of dependent adds overlapped, their totals and means a vector each (totals4); then each row's dx and gxhat
// by layer_norm_backward_store, as one row alone (the same bits: tests/tensor/test_ops_nn.cpp). Row q's values at
// offset q * s_row in g, x, dx, gxhat; its mean and rstd at q * s_stat.
void layer_norm_backward_rows4(const float* g, const float* x, const float* w, const float* mu, const float* r,
                               int64_t s_stat, int64_t s_row, int64_t c, float* dx, float* gxhat) {
  using detail::D8;
  using detail::F8;
  using detail::widen8;
  auto load8 = [](const float* p) {
    F8 v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  float m[4], rs[4];
  D8 a1[4], a2[4];
  for (int q = 0; q < 4; ++q) m[q] = mu[q * s_stat], rs[q] = r[q * s_stat], a1[q] = a2[q] = D8{};
  int64_t i = 0;
  for (; i + 8 <= c; i += 8) {
    F8 wv;
    if (w) wv = load8(w + i);
    for (int q = 0; q < 4; ++q) {
      const F8 gv = load8(g + q * s_row + i);
      const F8 dxh = w ? gv * wv : gv;
      const F8 xh = (load8(x + q * s_row + i) - m[q]) * rs[q];
      const D8 d = widen8(dxh);
      a1[q] += d;
      a2[q] += d * widen8(xh);
    }
  }
  for (; i < c; ++i)
    for (int q = 0; q < 4; ++q) {
      const float gi = g[q * s_row + i], dxh = w ? gi * w[i] : gi, xh = (x[q * s_row + i] - m[q]) * rs[q];
      a1[q][0] += static_cast<double>(dxh);
      a2[q][0] += static_cast<double>(dxh) * static_cast<double>(xh);
    }
  const D4 m1 = totals4(a1[0], a1[1], a1[2], a1[3]) / double(c), m2 = totals4(a2[0], a2[1], a2[2], a2[3]) / double(c);
  for (int q = 0; q < 4; ++q)
    layer_norm_backward_store<true>(g + q * s_row, 1, x + q * s_row, 1, w, 1, m[q], rs[q], c,
                                    static_cast<float>(m1[q]), static_cast<float>(m2[q]), dx + q * s_row,
                                    gxhat ? gxhat + q * s_row : nullptr);
}

}  // namespace

LayerNormOut layer_norm(const Array& x, const Array& weight, const Array& bias, double eps) {
  const char* op = "layer_norm";
  check_defined(x, op);
  check(x.ndim() >= 1, op, ": expected at least 1 dim, got shape ", x.shape());
  const int64_t nd = x.ndim(), c = x.shape()[nd - 1];
  check(c > 0, op, ": the last dim of ", x.shape(), " is empty");
  check(eps >= 0, op, ": expected eps >= 0, got ", eps);
  check_vector_param(weight, x, c, op, "weight");
  check_vector_param(bias, x, c, op, "bias");
  return dispatch_float(x.dtype(), op, [&](auto z) {
    using T = decltype(z);
    const Shape rows = detail::drop_dim(x.shape(), nd - 1);
    LayerNormOut out{Array::empty(x.shape(), x.dtype()), Array::empty(rows, x.dtype()), Array::empty(rows, x.dtype())};
    const Strides rst = detail::row_output_strides(x.shape(), nd - 1);
    const T* xp = x.data<T>();
    T* yp = out.y.data<T>();
    T* mp = out.mean.data<T>();
    T* rp = out.rstd.data<T>();
    const T* wp = weight.defined() ? weight.data<T>() : nullptr;
    const T* bp = bias.defined() ? bias.data<T>() : nullptr;
    const int64_t sw = weight.defined() ? weight.strides()[0] : 0, sb = bias.defined() ? bias.strides()[0] : 0;
    const int64_t sx = x.strides()[nd - 1];
    const bool unit = sx == 1 && (!wp || sw == 1) && (!bp || sb == 1);
    auto row = unit ? layer_norm_row<true, T> : layer_norm_row<false, T>;
    detail::for_each_row_run<3>(
        x.shape(), nd - 1, {&x.strides(), &out.y.strides(), &rst},
        [&](std::array<int64_t, 3> off, int64_t n, const std::array<int64_t, 3>& step) {
          int64_t i = 0;
          if constexpr (std::is_same_v<T, float>) {
            constexpr int R = 4;
            if (unit)
              for (; i + R <= n; i += R, off[0] += R * step[0], off[1] += R * step[1], off[2] += R * step[2])
                layer_norm_rows4(xp + off[0], step[0], yp + off[1], step[1], wp, bp, c, eps, mp + off[2],
                                 rp + off[2], step[2]);
          }
          for (; i < n; ++i, off[0] += step[0], off[1] += step[1], off[2] += step[2])
            row(xp + off[0], sx, yp + off[1], wp, sw, bp, sb, c, eps, mp + off[2], rp + off[2]);
        });
    return out;
  });
}

LayerNormGrads layer_norm_backward(const Array& grad, const Array& x, const Array& mean, const Array& rstd,
                                   const Array& weight, bool has_bias) {
  const char* op = "layer_norm_backward";
  check_same_dtype(grad, x, op);
  check_same_dtype(mean, x, op);
  check_same_dtype(rstd, x, op);
  check(x.ndim() >= 1 && grad.shape() == x.shape(), op, ": grad ", grad.shape(), " and x ",
        x.shape(), " differ in shape");
  const int64_t nd = x.ndim(), c = x.shape()[nd - 1];
  const Shape rows = detail::drop_dim(x.shape(), nd - 1);
  check(mean.shape() == rows && rstd.shape() == rows, op, ": expected mean and rstd of shape ", rows,
        ", got ", mean.shape(), " and ", rstd.shape());
  check_vector_param(weight, x, c, op, "weight");
  return dispatch_float(x.dtype(), op, [&](auto z) {
    using T = decltype(z);
    LayerNormGrads out;
    out.dx = Array::empty(x.shape(), x.dtype());
    Array gxhat;  // grad * xhat, summed over rows for dweight
    if (weight.defined()) gxhat = Array::empty(x.shape(), x.dtype());
    Strides mst = mean.strides(), rst = rstd.strides();  // per-row arrays, stride 0 along the row
    mst.push_back(0);
    rst.push_back(0);
    const T* gp = grad.data<T>();
    const T* xp = x.data<T>();
    const T* mp = mean.data<T>();
    const T* rp = rstd.data<T>();
    const T* wp = weight.defined() ? weight.data<T>() : nullptr;
    const int64_t sw = weight.defined() ? weight.strides()[0] : 0;
    T* dxp = out.dx.data<T>();
    T* gxp = weight.defined() ? gxhat.data<T>() : nullptr;
    const int64_t sg = grad.strides()[nd - 1], sx = x.strides()[nd - 1];
    const bool unit = sg == 1 && sx == 1 && (!wp || sw == 1);
    const Strides& ost = out.dx.strides();  // gxhat has the same (contiguous) strides
    auto row = unit ? layer_norm_backward_row<true, T> : layer_norm_backward_row<false, T>;
    detail::for_each_row_run<5>(
        x.shape(), nd - 1, {&grad.strides(), &x.strides(), &mst, &rst, &ost},
        [&](std::array<int64_t, 5> off, int64_t n, const std::array<int64_t, 5>& step) {
          int64_t i = 0;
          if constexpr (std::is_same_v<T, float>) {
            // whole groups of R rows, when g, x and dx step by the same number of elements from row to row (as
            // they do for contiguous rows) and mean and rstd alike
            constexpr int R = 4;
            if (unit && step[0] == step[1] && step[0] == step[4] && step[2] == step[3])
              for (; i + R <= n; i += R) {
                layer_norm_backward_rows4(gp + off[0], xp + off[1], wp, mp + off[2], rp + off[3], step[2],
                                          step[0], c, dxp + off[4], gxp ? gxp + off[4] : nullptr);
                for (size_t k = 0; k < 5; ++k) off[k] += R * step[k];
              }
          }
          for (; i < n; ++i) {
            row(gp + off[0], sg, xp + off[1], sx, wp, sw, mp[off[2]], rp[off[3]], c, dxp + off[4],
                gxp ? gxp + off[4] : nullptr);
            for (size_t k = 0; k < 5; ++k) off[k] += step[k];
          }
        });
    if (weight.defined()) out.dweight = sum_leading(gxhat);
    if (has_bias) out.dbias = sum_leading(grad);
    return out;
  });
}

// ---------------------------------------------------------------- cross-entropy

namespace {
void check_ce_args(const Array& logits, const Array& targets, int64_t ignore_index, const char* op) {
  check_defined(logits, op);
  check_defined(targets, op);
  check(logits.ndim() == 2, op, ": expected logits of shape (N,C), got ", logits.shape());
  check(targets.dtype() == DType::I64, op, ": expected int64 targets, got ", dtype_name(targets.dtype()));
  check(targets.ndim() == 1 && targets.shape()[0] == logits.shape()[0], op, ": expected targets of shape (",
        logits.shape()[0], ",) for logits ", logits.shape(), ", got ", targets.shape());
  const int64_t n = logits.shape()[0], c = logits.shape()[1], st = targets.strides()[0];
  const int64_t* t = targets.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {  // checked up front: kernels on threads must not throw
    const int64_t v = t[i * st];
    check(v == ignore_index || (v >= 0 && v < c), op, ": target ", v, " at row ", i, " is out of range for ", c,
          " classes");
  }
}
}  // namespace

// A counted row whose logits are all -inf (fully masked) has loss +inf (its target has probability 0) and gradient
// -onehot * grad / count (softmax of such a row is 0, see ops.h), never NaN.
CrossEntropyOut cross_entropy(const Array& logits, const Array& targets, int64_t ignore_index) {
  const char* op = "cross_entropy";
  check_ce_args(logits, targets, ignore_index, op);
  return dispatch_float(logits.dtype(), op, [&](auto z) {
    using T = decltype(z);
    const int64_t n = logits.shape()[0], c = logits.shape()[1];
    CrossEntropyOut out{Array(), Array::empty({n}, logits.dtype()), 0};
    std::vector<double> row_loss(static_cast<size_t>(n), 0.0);
    const T* x = logits.data<T>();
    const int64_t* t = targets.data<int64_t>();
    T* lse = out.lse.data<T>();
    const int64_t sc = logits.strides()[1];
    const Strides rst = detail::row_output_strides(logits.shape(), 1);  // (1, 0): row index
    const Strides tst{targets.strides()[0], 0};
    detail::for_each_row<3>(logits.shape(), 1, {&logits.strides(), &rst, &tst},
                            [&](const std::array<int64_t, 3>& off) {
                              const T* xr = x + off[0];
                              // The vectorised maximum of a dense row; the first NaN, as row_max gives it, when
                              // there is one (row_max's compare chain was a third of the op for 65 classes).
                              T m = sc == 1 ? row_max_lanes(xr, c) : row_max(xr, c, sc);
                              if (m != m) m = row_max(xr, c, sc);
                              double l;
                              if (m == -std::numeric_limits<T>::infinity() || m != m) {
                                l = static_cast<double>(m);  // all -inf: lse = -inf; NaN stays NaN
                              } else {
                                double s = 0.0;
                                if constexpr (std::is_same_v<T, float>) {
                                  T buf[64];  // exponentials 64 at a time: the loop filling them vectorises
                                  for (int64_t i0 = 0; i0 < c; i0 += 64) {
                                    const int64_t k = std::min<int64_t>(64, c - i0);
                                    for (int64_t i = 0; i < k; ++i) buf[i] = fastmath::exp(xr[(i0 + i) * sc] - m);
                                    s += detail::sum_run(buf, k, 1);
                                  }
                                } else {  // float64: one running sum, as in softmax_row
                                  for (int64_t i = 0; i < c; ++i) s += std::exp(xr[i * sc] - m);
                                }
                                l = static_cast<double>(m) + std::log(s);
                              }
                              lse[off[1]] = static_cast<T>(l);
                              const int64_t tv = t[off[2]];
                              // A fully masked row (all -inf) gives its target probability 0: loss +inf, not
                              // -inf - (-inf) = NaN.
                              if (tv != ignore_index)
                                row_loss[off[1]] = l == -INFINITY ? INFINITY : l - static_cast<double>(xr[tv * sc]);
                            });
    double total = 0.0;
    const int64_t st = targets.strides()[0];
    for (int64_t i = 0; i < n; ++i)
      if (t[i * st] != ignore_index) {
        total += row_loss[i];
        out.count++;
      }
    // No counted rows: the loss is 0 (not 0/0 = NaN), see ops.h.
    out.loss = Array::scalar(out.count ? total / static_cast<double>(out.count) : 0.0, logits.dtype());
    return out;
  });
}

Array cross_entropy_backward(const Array& logits, const Array& targets, const Array& lse, int64_t count,
                             double grad, int64_t ignore_index) {
  const char* op = "cross_entropy_backward";
  check_ce_args(logits, targets, ignore_index, op);
  check_same_dtype(logits, lse, op);
  check(lse.ndim() == 1 && lse.shape()[0] == logits.shape()[0], op, ": expected lse of shape (", logits.shape()[0],
        ",), got ", lse.shape());
  check(count >= 0, op, ": expected count >= 0, got ", count);
  return dispatch_float(logits.dtype(), op, [&](auto z) {
    using T = decltype(z);
    const int64_t c = logits.shape()[1];
    Array out = Array::zeros(logits.shape(), logits.dtype());
    if (count == 0) return out;  // nothing counted: the loss was the constant 0
    const T scale = static_cast<T>(grad / static_cast<double>(count));
    const T* x = logits.data<T>();
    const int64_t* t = targets.data<int64_t>();
    const T* lp = lse.data<T>();
    T* o = out.data<T>();
    const int64_t sc = logits.strides()[1];
    const Strides lst{lse.strides()[0], 0}, tst{targets.strides()[0], 0};
    detail::for_each_row<4>(logits.shape(), 1, {&logits.strides(), &lst, &tst, &out.strides()},
                            [&](const std::array<int64_t, 4>& off) {
                              const int64_t tv = t[off[2]];
                              if (tv == ignore_index) return;  // stays 0
                              const T* xr = x + off[0];
                              const T l = lp[off[1]];
                              T* orow = o + off[3];
                              // softmax - onehot; a fully masked row has softmax 0 (ops.h), not exp(-inf+inf)
                              if (l == -std::numeric_limits<T>::infinity()) {
                                for (int64_t i = 0; i < c; ++i) orow[i] = T(0);
                              } else if (sc == 1) {  // the common case, vectorised
                                for (int64_t i = 0; i < c; ++i) orow[i] = fastmath::exp(xr[i] - l) * scale;
                              } else {
                                for (int64_t i = 0; i < c; ++i) orow[i] = fastmath::exp(xr[i * sc] - l) * scale;
                              }
                              orow[tv] -= scale;
                            });
    return out;
  });
}

}  // namespace qkvlab
