// Private helpers shared by the kernel files tensor/ops_*.cpp (not part of the public API; include tensor/ops.h).
//
// The building blocks:
//   parallel_strided_loop  strided_loop (tensor/iter.h) split into chunks along the largest dim and run on
//                          OpenMP threads when there is enough work; body(off, n, inner) as in strided_loop.
//   for_each_row           calls row(offsets) once per 1-D "row" along one dim (softmax, max, layer norm, ...).
//   check_same_dtype       "add: expected operands of the same dtype, got float32 and float64"
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "tensor/array.h"
#include "tensor/iter.h"
#include "tensor/parallel.h"

namespace qkvlab::detail {

// Below this many elements (times the per-element cost) a kernel stays on one thread: thread start-up costs
// a few microseconds, about what a core needs for ~30k simple float ops.
constexpr int64_t kGrain = 32768;

inline void check_defined(const Array& a, const char* op) { check(a.defined(), op, ": the array is undefined"); }

inline void check_same_dtype(const Array& a, const Array& b, const char* op) {
  check_defined(a, op);
  check_defined(b, op);
  check(a.dtype() == b.dtype(), op, ": expected operands of the same dtype, got ", dtype_name(a.dtype()), " and ",
        dtype_name(b.dtype()));
}

// Runs strided_loop over the sub-range [begin, end) of `dim`, with offsets relative to the full operands.
template <size_t N, class Body>
void strided_loop_range(const Shape& shape, const std::array<Strides, N>& strides, size_t dim, int64_t begin,
                        int64_t end, Body& body) {
  Shape sub = shape;
  sub[dim] = end - begin;
  std::array<int64_t, N> base;
  std::array<const Strides*, N> sp;
  for (size_t k = 0; k < N; ++k) {
    base[k] = begin * strides[k][dim];
    sp[k] = &strides[k];
  }
  strided_loop<N>(sub, sp, [&](std::array<int64_t, N> off, int64_t n, const std::array<int64_t, N>& inner) {
    for (size_t k = 0; k < N; ++k) off[k] += base[k];
    body(off, n, inner);
  });
}

// How many chunks `numel` elements of `cost` each are worth splitting into (1 = run serially).
inline int64_t chunk_count(int64_t numel, int64_t cost, int64_t dim_size) {
  const int threads = num_threads();
  if (threads <= 1) return 1;
  const int64_t work = numel * std::max<int64_t>(cost, 1);
  if (work < 2 * kGrain) return 1;
  return std::min<int64_t>({dim_size, work / kGrain, int64_t{threads} * 4});
}

// strided_loop on several threads. The body must only write to locations that belong to its elements (the
// output of an elementwise kernel is never expanded, so chunks never race). `cost` is a rough per-element
// cost in units of one add (e.g. the row length for a per-row body).
template <size_t N, class Body>
void parallel_strided_loop(const Shape& shape, const std::array<const Strides*, N>& strides, Body&& body,
                           int64_t cost = 1) {
  const int64_t numel = shape_numel(shape);
  if (numel == 0) return;
  // Split the outermost dim that has room for every chunk (else the largest): each chunk is then whole inner
  // rows, long runs of memory. Splitting the last dim of a (32, 128, 512) GELU input gave each thread runs of
  // 64 values, and two threads were no faster than one.
  size_t split = 0;
  for (size_t d = 1; d < shape.size(); ++d)
    if (shape[d] > shape[split]) split = d;
  for (size_t d = 0; d < split; ++d)
    if (shape[d] >= int64_t{num_threads()} * 4) {
      split = d;
      break;
    }
  const int64_t chunks = shape.empty() ? 1 : chunk_count(numel, cost, shape[split]);
  if (chunks <= 1) {
    strided_loop<N>(shape, strides, body);
    return;
  }
  std::array<Strides, N> st;
  for (size_t k = 0; k < N; ++k) st[k] = *strides[k];
  const int64_t size = shape[split];
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    strided_loop_range<N>(shape, st, split, size * c / chunks, size * (c + 1) / chunks, body);
  }
}

// Shape and strides with one dim removed.
inline Shape drop_dim(const Shape& s, int64_t dim) {
  Shape out = s;
  out.erase(out.begin() + dim);
  return out;
}

// Calls rows(offsets, n, step) for runs of the rows of `shape` with `dim` removed: n rows, the first at
// offsets[k] in operand k, each next one step[k] further (step along a row with operand k's stride at `dim`).
// Runs go to threads in parallel. A kernel that handles several rows at once (layer norm) takes whole runs.
template <size_t N, class Rows>
void for_each_row_run(const Shape& shape, int64_t dim, const std::array<const Strides*, N>& strides, Rows&& rows) {
  const Shape outer = drop_dim(shape, dim);
  std::array<Strides, N> ost;
  std::array<const Strides*, N> op;
  for (size_t k = 0; k < N; ++k) {
    ost[k] = drop_dim(*strides[k], dim);
    op[k] = &ost[k];
  }
  parallel_strided_loop<N>(outer, op, rows, shape[dim] * 4);
}

// Calls row(offsets) for every index of `shape` with `dim` removed; offsets[k] is operand k's offset of the
// row's first element (step along the row with operand k's stride at `dim`). Rows run in parallel.
template <size_t N, class Row>
void for_each_row(const Shape& shape, int64_t dim, const std::array<const Strides*, N>& strides, Row&& row) {
  for_each_row_run<N>(shape, dim, strides,
                      [&](const std::array<int64_t, N>& off, int64_t n, const std::array<int64_t, N>& step) {
                        std::array<int64_t, N> o = off;
                        for (int64_t i = 0; i < n; ++i) {
                          row(o);
                          for (size_t k = 0; k < N; ++k) o[k] += step[k];
                        }
                      });
}

// The strides of a contiguous array of shape `outer` (= shape with `dim` removed), re-inserted with stride 0
// at `dim`: lets a per-row output (mean, rstd, lse) ride along in for_each_row.
inline Strides row_output_strides(const Shape& shape, int64_t dim) {
  Strides st = contiguous_strides(drop_dim(shape, dim));
  st.insert(st.begin() + dim, 0);
  return st;
}

// Eight floats as eight doubles, one vector of each (GCC/Clang vector types: one AVX-512 register, two AVX2 ones,
// four NEON ones). The conversion is exact. With AVX-512 it is one instruction, vcvtps2pd; GCC 12 compiles
// __builtin_convertvector of 8 floats to 8 doubles as two 4-wide conversions and an insert (three more
// instructions a vector: layer norm's row sums spent a third of their time there).
typedef double D8 __attribute__((vector_size(64)));
typedef float F8 __attribute__((vector_size(32)));
[[gnu::always_inline]] inline D8 widen8(F8 v) {
#if defined(__AVX512F__)
  // (the zero-masked form with every lane selected compiles to the same instruction; the plain intrinsic starts
  // from _mm512_undefined_pd(), which GCC 12 then warns is used uninitialized)
  return reinterpret_cast<D8>(_mm512_maskz_cvtps_pd(0xFF, reinterpret_cast<__m256>(v)));
#else
  return __builtin_convertvector(v, D8);
#endif
}
[[gnu::always_inline]] inline D8 load_widen8(const float* p) {
  F8 v;
  std::memcpy(&v, p, sizeof v);
  return widen8(v);
}

// col[c] += x[r * ld + c] for the rows r in [r0, r1) in order and the columns c in [0, cols), in double: column sums
// over rows (bias gradients; sum() over the leading dims, linear_backward's db). Each column's sum takes its rows in
// order, however the columns are grouped. kW columns at a time keep their sums in registers through all the rows
// (64 with AVX-512, 32 otherwise, then 32, then the rest): 8 vectors of doubles, enough independent adds to hide
// their latency. Summed in memory, every row's add waited on the store of the row before ((2048, 64): 15 -> 12 us
// on one thread; 10 -> 8 on two, a block of 32 columns each). Floats are widened 8 at a time (widen8 above):
// 12 -> 10 us, bound by the conversions.
#if defined(__AVX512F__)
constexpr int64_t kColumnsInRegisters = 64;
#else
constexpr int64_t kColumnsInRegisters = 32;
#endif
template <class T>
void add_rows(const T* x, int64_t ld, int64_t cols, int64_t r0, int64_t r1, double* col) {
  int64_t c = 0;
  auto in_registers = [&](auto width) {
    constexpr int64_t kW = decltype(width)::value;
    if constexpr (std::is_same_v<T, float>) {  // kW / 8 vectors of doubles, each row's floats widened 8 at a time
      for (; c + kW <= cols; c += kW) {
        D8 s[kW / 8];
        std::memcpy(s, col + c, sizeof s);
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t i = 0; i < kW / 8; ++i) s[i] += load_widen8(x + r * ld + c + 8 * i);
        std::memcpy(col + c, s, sizeof s);
      }
      return;
    }
    for (; c + kW <= cols; c += kW) {
      double s[kW];
      for (int64_t i = 0; i < kW; ++i) s[i] = col[c + i];
      for (int64_t r = r0; r < r1; ++r) {
        const T* p = x + r * ld + c;
        for (int64_t i = 0; i < kW; ++i) s[i] += static_cast<double>(p[i]);
      }
      for (int64_t i = 0; i < kW; ++i) col[c + i] = s[i];
    }
  };
  in_registers(std::integral_constant<int64_t, kColumnsInRegisters>());
  if constexpr (kColumnsInRegisters > 32) in_registers(std::integral_constant<int64_t, 32>());
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t i = c; i < cols; ++i) col[i] += static_cast<double>(x[r * ld + i]);
}

// Sum of n elements p[0], p[s], ... in double with 8 independent partial sums (fast, and far more accurate than
// one running float sum).
template <class T>
inline double sum_run(const T* p, int64_t n, int64_t s) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  if (s == 1) {
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) acc[j] += static_cast<double>(p[i + j]);
  } else {
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) acc[j] += static_cast<double>(p[(i + j) * s]);
  }
  for (; i < n; ++i) acc[0] += static_cast<double>(p[i * s]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace qkvlab::detail
