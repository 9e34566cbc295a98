// Strided iteration: the one loop every elementwise kernel is built on.
//
// strided_loop(shape, {&strides_a, &strides_b, ...}, body) walks all elements of `shape` in row-major order.
// Adjacent dims that are laid out as one (for every operand) are merged first, so a contiguous array is one
// run. body(offsets, n, inner) is then called once per run along the last merged dim: offsets[k] is operand k's
// element offset of the run's first element, inner[k] its stride along the run, n the run length.
// Kernels test inner[k] == 1 to take a vectorizable path. Offsets are relative to each operand's data<T>().
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "tensor/shape.h"

namespace qkvlab {

template <size_t N, class Body>
void strided_loop(const Shape& shape, const std::array<const Strides*, N>& strides, Body&& body) {
  // Drop size-1 dims, then merge dim i into dim i+1 when every operand has stride[i] == stride[i+1]*size[i+1].
  std::vector<int64_t> sz;
  std::vector<std::array<int64_t, N>> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return;  // nothing to do
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

}  // namespace qkvlab
