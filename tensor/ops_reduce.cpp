// Reductions: sum/mean over any set of dims, max/argmax along one dim, max_all, sum_to.
//
// sum walks the input once in memory order (dims sorted by stride) with an accumulator array that has stride 0
// on the reduced dims, so "reduce the rows" and "reduce the columns" are both one streaming pass. Accumulation is
// in double for float32 too (so a sum of 1e6 floats is exact to ~1e-7 relative), with 8 partial sums along a
// reduced run. Threads split a kept dim (disjoint outputs) or, for a full reduction, the largest dim into a fixed
// number of chunks (partials added in chunk order, independent of the thread count).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "tensor/ops.h"
#include "tensor/ops_detail.h"

namespace qkvlab {

using detail::check_defined;

namespace {

// Which dims `dims` names (empty = all); duplicates are an error.
std::vector<bool> reduce_mask(const Array& a, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> mask(a.shape().size(), dims.empty());
  for (int64_t d : dims) {
    const int64_t w = wrap_dim(d, a.ndim(), op);
    check(!mask[w], op, ": dim ", d, " appears twice in ", dims);
    mask[w] = true;
  }
  return mask;
}

Shape reduced_shape(const Shape& shape, const std::vector<bool>& mask, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!mask[d]) out.push_back(shape[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// acc[kept index] += a[...] over the reduced dims; acc is contiguous over the kept dims (zeroed by the caller).
template <class T>
void sum_into(const Array& a, const std::vector<bool>& mask, double* acc) {
  const size_t nd = a.shape().size();
  const T* x = a.data<T>();
  // Every row of a contiguous (..., C) array summed (a bias's or a LayerNorm parameter's gradient, many times a
  // step): one plain loop over the rows, each column's sum taking them in order as the general walk below does
  // for C >= 16 (the same bits; with fewer columns it sums the rows in chunks); threads take blocks of columns.
  if (nd >= 2 && !mask[nd - 1] && a.is_contiguous() && a.shape()[nd - 1] >= 16 &&
      std::all_of(mask.begin(), mask.end() - 1, [](bool reduced) { return reduced; })) {
    const int64_t C = a.shape()[nd - 1], R = a.numel() / C;
    // 32 columns at least a block: blocks of 16 ran slower on 2 threads than one pass on 1 ((2048, 64): 4 blocks
    // 12-15 us, 1 thread 12, 2 blocks of 32 7)
    const int64_t blocks = C >= 64 ? detail::chunk_count(a.numel(), 1, C / 32) : 1;
#pragma omp parallel for num_threads(num_threads()) schedule(static) if (blocks > 1)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t c0 = C * blk / blocks, c1 = C * (blk + 1) / blocks;
      // With several blocks each sums into a buffer of its own thread's: two blocks writing into acc side by
      // side share the cache line at their boundary whenever acc is not 64-byte aligned, and every row's store
      // then moves it between the cores (`tiny` at 2 threads: column sums 6 -> 9 % of a step). The buffer is
      // kept from call to call, so this costs no allocation once it has grown.
      thread_local std::vector<double> own;
      if (blocks > 1) own.assign(acc + c0, acc + c1);
      double* __restrict q = blocks > 1 ? own.data() : acc + c0;
      detail::add_rows(x + c0, C, c1 - c0, 0, R, q);  // each column's rows in order
      if (blocks > 1) std::copy(own.begin(), own.end(), acc + c0);
    }
    return;
  }
  // Accumulator strides: contiguous over kept dims, 0 on reduced dims.
  Strides acc_st(nd, 0);
  int64_t s = 1;
  for (size_t d = nd; d-- > 0;)
    if (!mask[d]) {
      acc_st[d] = s;
      s *= a.shape()[d];
    }
  // Visit the input in memory order: dims by decreasing |stride| (stable, so ties keep the logical order).
  std::vector<size_t> order(nd);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t i, size_t j) { return std::abs(a.strides()[i]) > std::abs(a.strides()[j]); });
  Shape shape(nd);
  std::array<Strides, 2> st{Strides(nd), Strides(nd)};
  for (size_t i = 0; i < nd; ++i) {
    shape[i] = a.shape()[order[i]];
    st[0][i] = acc_st[order[i]];
    st[1][i] = a.strides()[order[i]];
  }
  const int64_t numel = shape_numel(shape);
  if (numel == 0) return;

  auto body = [&](double* out, const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& in) {
    const T* p = x + off[1];
    double* q = out + off[0];
    if (in[0] == 0) {
      *q += detail::sum_run(p, n, in[1]);
    } else if (in[0] == 1 && in[1] == 1) {
      for (int64_t i = 0; i < n; ++i) q[i] += static_cast<double>(p[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) q[i * in[0]] += static_cast<double>(p[i * in[1]]);
    }
  };

  // Split a kept dim when there is one with some size (each chunk owns its outputs), else the largest dim with a
  // partial accumulator per chunk.
  int64_t kept = -1, largest = -1;
  for (size_t d = 0; d < nd; ++d) {
    if (st[0][d] != 0 && shape[d] > 1 && (kept < 0 || shape[d] > shape[kept])) kept = static_cast<int64_t>(d);
    if (shape[d] > 1 && (largest < 0 || shape[d] > shape[largest])) largest = static_cast<int64_t>(d);
  }
  if (kept >= 0 && shape[kept] >= 16) {  // a fixed bound (not the thread count): same rounding on any machine
    const int64_t chunks = detail::chunk_count(numel, 1, shape[kept]);
    auto run = [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& in) {
      body(acc, off, n, in);
    };
    if (chunks <= 1) {
      strided_loop<2>(shape, {&st[0], &st[1]}, run);
      return;
    }
#pragma omp parallel for num_threads(num_threads()) schedule(static)
    for (int64_t c = 0; c < chunks; ++c)
      detail::strided_loop_range<2>(shape, st, static_cast<size_t>(kept), shape[kept] * c / chunks,
                                    shape[kept] * (c + 1) / chunks, run);
    return;
  }
  // Fixed chunking (not thread-dependent) keeps results bit-identical across --threads.
  const int64_t m = s;  // number of outputs
  const int64_t chunks =
      largest < 0 ? 1 : std::min<int64_t>({shape[largest], std::max<int64_t>(1, numel / (4 * detail::kGrain)), 64});
  if (chunks <= 1) {
    strided_loop<2>(shape, {&st[0], &st[1]}, [&](auto off, int64_t n, auto in) { body(acc, off, n, in); });
    return;
  }
  std::vector<double> partial(static_cast<size_t>(chunks * m), 0.0);
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    double* mine = partial.data() + c * m;
    auto run = [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& in) {
      body(mine, off, n, in);
    };
    detail::strided_loop_range<2>(shape, st, static_cast<size_t>(largest), shape[largest] * c / chunks,
                                  shape[largest] * (c + 1) / chunks, run);
  }
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t i = 0; i < m; ++i) acc[i] += partial[c * m + i];
}

// sum (scale = 1) or mean (scale = 1 / count) into a new array of a's dtype.
Array sum_scaled(const Array& a, const std::vector<int64_t>& dims, bool keepdim, const char* op, bool mean) {
  check_defined(a, op);
  const std::vector<bool> mask = reduce_mask(a, dims, op);
  return dispatch_float(a.dtype(), op, [&](auto z) {
    using T = decltype(z);
    Array out = Array::empty(reduced_shape(a.shape(), mask, keepdim), a.dtype());
    std::vector<double> acc(static_cast<size_t>(out.numel()), 0.0);
    sum_into<T>(a, mask, acc.data());
    int64_t count = 1;
    for (size_t d = 0; d < mask.size(); ++d)
      if (mask[d]) count *= a.shape()[d];
    // The mean of nothing is NaN, as in NumPy and PyTorch.
    const double scale = !mean ? 1.0 : (count == 0 ? std::numeric_limits<double>::quiet_NaN() : 1.0 / count);
    T* o = out.data<T>();
    for (size_t i = 0; i < acc.size(); ++i) o[i] = static_cast<T>(acc[i] * scale);
    return out;
  });
}

// max / argmax along one dim. NaN wins (the first NaN), as in PyTorch; ties keep the lowest index.
template <bool kArg>
Array max_along(const Array& a, int64_t dim, bool keepdim, const char* op) {
  check_defined(a, op);
  const int64_t d = wrap_dim(dim, a.ndim() == 0 ? 1 : a.ndim(), op);
  if (a.ndim() == 0) {  // a 0-d array along dim 0/-1 is its own max, at index 0
    return kArg ? Array::scalar(0.0, DType::I64) : a.clone();
  }
  const int64_t len = a.shape()[d];
  check(len > 0, op, ": cannot reduce over dim ", dim, " of size 0 in ", a.shape());
  return dispatch_float(a.dtype(), op, [&](auto z) {
    using T = decltype(z);
    Shape oshape = a.shape();
    if (keepdim) oshape[d] = 1;
    else oshape.erase(oshape.begin() + d);
    Array out = Array::empty(oshape, kArg ? DType::I64 : a.dtype());
    const Strides ost = detail::row_output_strides(a.shape(), d);
    const T* x = a.data<T>();
    const int64_t sx = a.strides()[d];
    detail::for_each_row<2>(a.shape(), d, {&a.strides(), &ost}, [&](const std::array<int64_t, 2>& off) {
      const T* p = x + off[0];
      // The first maximum, by selects rather than branches on the values (a branch taken at random, as each new
      // maximum along a row of logits is, costs more than comparing the rest of a short row: (2048, 10) 54 ->
      // 22 us). A NaN anywhere is the maximum instead, the first one.
      T best = p[0];
      int64_t bi = 0;
      bool nan = best != best;
      for (int64_t i = 1; i < len; ++i) {
        const T v = p[i * sx];
        const bool greater = v > best;
        best = greater ? v : best;
        bi = greater ? i : bi;
        nan |= v != v;
      }
      if (nan) {
        for (bi = 0; !std::isnan(p[bi * sx]);) ++bi;
        best = p[bi * sx];
      }
      if constexpr (kArg) out.data<int64_t>()[off[1]] = bi;
      else out.data<T>()[off[1]] = best;
    });
    return out;
  });
}

}  // namespace

Array sum(const Array& a, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_scaled(a, dims, keepdim, "sum", false);
}

Array mean(const Array& a, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_scaled(a, dims, keepdim, "mean", true);
}

Array max(const Array& a, int64_t dim, bool keepdim) { return max_along<false>(a, dim, keepdim, "max"); }

Array argmax(const Array& a, int64_t dim, bool keepdim) { return max_along<true>(a, dim, keepdim, "argmax"); }

double max_all(const Array& a) {
  check_defined(a, "max_all");
  check(a.numel() > 0, "max_all: expected a non-empty array, got shape ", a.shape());
  return dispatch_float(a.dtype(), "max_all", [&](auto z) {
    using T = decltype(z);
    const T* x = a.data<T>();
    double best = -std::numeric_limits<double>::infinity();
    bool nan = false;
    strided_loop<1>(a.shape(), {&a.strides()}, [&](auto off, int64_t n, auto in) {
      T m = x[off[0]];
      for (int64_t i = 0; i < n; ++i) {
        const T v = x[off[0] + i * in[0]];
        m = v > m ? v : m;
        nan = nan || v != v;
      }
      best = std::max(best, static_cast<double>(m));
    });
    return nan ? std::numeric_limits<double>::quiet_NaN() : best;
  });
}

Array sum_to(const Array& a, const Shape& shape) {
  check_defined(a, "sum_to");
  const int64_t lead = a.ndim() - static_cast<int64_t>(shape.size());
  bool ok = lead >= 0;
  std::vector<int64_t> dims;
  for (int64_t d = 0; ok && d < a.ndim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    const int64_t want = shape[d - lead], have = a.shape()[d];
    if (want == have) continue;
    if (want == 1) dims.push_back(d);
    else ok = false;
  }
  check(ok, "sum_to: cannot reduce ", a.shape(), " to ", shape,
        " (the target must broadcast to the source)");
  if (dims.empty()) return a.clone();  // a new array, as every kernel returns
  return sum(a, dims, false).reshape(shape);
}

}  // namespace qkvlab
