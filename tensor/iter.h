// Strided iteration: the one loop every elementwise kernel is built on.
//
// strided_loop(shape, {&strides_a, &strides_b, ...}, body) walks all elements of `shape` in row-major order.
// Adjacent dims that are laid out as one (for every operand) are merged first, so a contiguous array is one
// run. body(offsets, n, inner) is then called once per run along the last merged dim: offsets[k] is operand k's
// element offset of the run's first element, inner[k] its stride along the run, n the run length.
// Kernels test inner[k] == 1 to take a vectorizable path. Offsets are relative to each operand's data<T>().
//
// strided_loop_flat(shape, strides, begin, end, body) does the same for the elements with row-major (flat)
// index in [begin, end) only; the first and last runs may be partial. Parallel kernels split [0, numel) into
// one range per thread (see Array::copy_). The ranges must not write the same element twice: check that the
// output does not overlap itself (no stride-0 dims), as a contiguous output never does.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "tensor/shape.h"

namespace qkvlab {

namespace iter_detail {
// Drops size-1 dims and merges adjacent dims that are laid out as one for every operand (as strided_loop does).
// Returns false when the shape has a size-0 dim (nothing to visit).
template <size_t N>
bool merge_dims(const Shape& shape, const std::array<const Strides*, N>& strides, std::vector<int64_t>& sz,
                std::vector<std::array<int64_t, N>>& st) {
  sz.clear();
  st.clear();
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] == 0) return false;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    std::array<int64_t, N> s;
    for (size_t k = 0; k < N; ++k) s[k] = (*strides[k])[d];
    if (!sz.empty()) {
      bool merge = true;
      for (size_t k = 0; k < N; ++k) merge = merge && st.back()[k] == s[k] * shape[d];
      if (merge) {
        sz.back() *= shape[d];
        st.back() = s;
        continue;
      }
    }
    sz.push_back(shape[d]);
    st.push_back(s);
  }
  return true;
}
}  // namespace iter_detail

template <size_t N, class Body>
void strided_loop(const Shape& shape, const std::array<const Strides*, N>& strides, Body&& body) {
  std::vector<int64_t> sz;
  std::vector<std::array<int64_t, N>> st;
  if (!iter_detail::merge_dims<N>(shape, strides, sz, st)) return;  // a size-0 dim: nothing to do
  std::array<int64_t, N> off{};
  if (sz.empty()) {  // a single element
    std::array<int64_t, N> one{};
    body(off, int64_t{1}, one);
    return;
  }
  const size_t nd = sz.size();
  const int64_t n = sz[nd - 1];
  const std::array<int64_t, N> inner = st[nd - 1];
  if (nd == 1) {
    body(off, n, inner);
    return;
  }
  // Odometer over the outer dims.
  std::vector<int64_t> idx(nd - 1, 0);
  while (true) {
    body(off, n, inner);
    int64_t d = static_cast<int64_t>(nd) - 2;
    for (; d >= 0; --d) {
      if (++idx[d] < sz[d]) {
        for (size_t k = 0; k < N; ++k) off[k] += st[d][k];
        break;
      }
      for (size_t k = 0; k < N; ++k) off[k] -= st[d][k] * (sz[d] - 1);
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

template <size_t N, class Body>
void strided_loop_flat(const Shape& shape, const std::array<const Strides*, N>& strides, int64_t begin,
                        int64_t end, Body&& body) {
  std::vector<int64_t> sz;
  std::vector<std::array<int64_t, N>> st;
  if (!iter_detail::merge_dims<N>(shape, strides, sz, st)) return;
  begin = std::max<int64_t>(begin, 0);
  std::array<int64_t, N> off{};
  if (sz.empty()) {  // a single element, flat index 0
    if (begin == 0 && end > 0) {
      std::array<int64_t, N> one{};
      body(off, int64_t{1}, one);
    }
    return;
  }
  const size_t nd = sz.size();
  int64_t total = 1;
  for (int64_t s : sz) total *= s;
  end = std::min(end, total);
  if (begin >= end) return;
  // Unravel `begin` into a multi-index over the merged dims.
  std::vector<int64_t> idx(nd, 0);
  int64_t rem = begin;
  for (size_t d = nd; d-- > 0;) {
    idx[d] = rem % sz[d];
    rem /= sz[d];
    for (size_t k = 0; k < N; ++k) off[k] += idx[d] * st[d][k];
  }
  const int64_t n = sz[nd - 1];
  const std::array<int64_t, N> inner = st[nd - 1];
  int64_t remaining = end - begin;
  while (true) {
    const int64_t run = std::min(n - idx[nd - 1], remaining);
    body(off, run, inner);
    remaining -= run;
    if (remaining == 0) return;
    // The run reached the end of its row: back to the row start, then step the outer dims.
    for (size_t k = 0; k < N; ++k) off[k] -= idx[nd - 1] * inner[k];
    idx[nd - 1] = 0;
    for (int64_t d = static_cast<int64_t>(nd) - 2; d >= 0; --d) {
      if (++idx[d] < sz[d]) {
        for (size_t k = 0; k < N; ++k) off[k] += st[d][k];
        break;
      }
      for (size_t k = 0; k < N; ++k) off[k] -= st[d][k] * (sz[d] - 1);
      idx[d] = 0;
    }
  }
}

}  // namespace qkvlab
