// Helpers for the kernel tests (tests/tensor/test_ops*.cpp): a reference evaluator in double over multi-indices,
// and random arrays with awkward layouts (permuted, stepped slices, stride-0 expansions, offset views).
//
// The reference never goes through strided_loop or the kernels: it reads elements one by one with Array::at,
// which computes offsets directly from shape/strides/offset.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "tensor/array.h"
#include "tensor/ops.h"

namespace qkvlab::testing {

using Index = std::vector<int64_t>;

// Calls fn(index) for every index of `shape` in row-major order (once for a 0-d shape, never when empty).
inline void for_each_index(const Shape& shape, const std::function<void(const Index&)>& fn) {
  for (int64_t s : shape)
    if (s == 0) return;
  Index idx(shape.size(), 0);
  while (true) {
    fn(idx);
    int64_t d = static_cast<int64_t>(shape.size()) - 1;
    for (; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

// A dense row-major table of doubles: what the reference loops compute into.
struct Ref {
  Shape shape;
  std::vector<double> v;
  explicit Ref(Shape s = {}) : shape(std::move(s)), v(static_cast<size_t>(shape_numel(shape)), 0.0) {}
  int64_t flat(const Index& idx) const {
    int64_t f = 0;
    for (size_t d = 0; d < shape.size(); ++d) f = f * shape[d] + idx[d];
    return f;
  }
  double& operator[](const Index& idx) { return v[static_cast<size_t>(flat(idx))]; }
  double operator[](const Index& idx) const { return v[static_cast<size_t>(flat(idx))]; }
};

// Reads an Array element by element (Array::at), independent of the kernels' iteration.
inline Ref read(const Array& a) {
  Ref r(a.shape());
  for_each_index(a.shape(), [&](const Index& i) { r[i] = a.at(i); });
  return r;
}

// The element of `a` that broadcasting maps output index `out` to.
inline double bcast_at(const Ref& a, const Index& out) {
  Index idx(a.shape.size());
  const size_t lead = out.size() - a.shape.size();
  for (size_t d = 0; d < a.shape.size(); ++d) idx[d] = a.shape[d] == 1 ? 0 : out[lead + d];
  return a[idx];
}

// Max |got - want| over all elements, with NaN == NaN and inf == inf counting as equal; shapes must match.
inline double ref_diff(const Array& got, const Ref& want) {
  REQUIRE(got.shape() == want.shape);
  double m = 0.0;
  for_each_index(want.shape, [&](const Index& i) {
    const double g = got.at(i), w = want[i];
    if (std::isnan(g) && std::isnan(w)) return;
    if (g == w) return;
    const double d = std::abs(g - w);
    m = std::isnan(d) ? INFINITY : std::max(m, d);
  });
  return m;
}

// Relative version: |got - want| / (1 + |want|).
inline double ref_rel_diff(const Array& got, const Ref& want) {
  REQUIRE(got.shape() == want.shape);
  double m = 0.0;
  for_each_index(want.shape, [&](const Index& i) {
    const double g = got.at(i), w = want[i];
    if ((std::isnan(g) && std::isnan(w)) || g == w) return;
    const double d = std::abs(g - w) / (1.0 + std::abs(w));
    m = std::isnan(d) ? INFINITY : std::max(m, d);
  });
  return m;
}

inline double tol(DType t) { return t == DType::F32 ? 2e-5 : 1e-12; }

// Layout kinds for random_view.
enum class Layout { Contiguous, Permuted, Stepped, Expanded, PermutedStepped, Count };

inline const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Contiguous: return "contiguous";
    case Layout::Permuted: return "permuted";
    case Layout::Stepped: return "stepped slices with an offset";
    case Layout::Expanded: return "expanded (stride 0)";
    case Layout::PermutedStepped: return "permuted stepped slices";
    default: return "?";
  }
}

// An array of logical shape `shape` with normal(0,1) values (scaled by `scale`) and the given memory layout.
inline Array random_view(Generator& gen, const Shape& shape, DType dt, Layout layout, double scale = 1.0) {
  const size_t nd = shape.size();
  switch (layout) {
    case Layout::Contiguous:
      return Array::normal(shape, gen, 0.0, scale, dt);
    case Layout::Permuted: {
      std::vector<int64_t> perm(nd);
      std::iota(perm.begin(), perm.end(), 0);
      for (size_t i = nd; i > 1; --i) std::swap(perm[i - 1], perm[gen.randint(0, static_cast<int64_t>(i))]);
      Shape bs(nd);
      for (size_t i = 0; i < nd; ++i) bs[i] = shape[perm[i]];
      std::vector<int64_t> inv(nd);
      for (size_t i = 0; i < nd; ++i) inv[perm[i]] = static_cast<int64_t>(i);
      Array v = Array::normal(bs, gen, 0.0, scale, dt).permute(inv);
      REQUIRE(v.shape() == shape);
      return v;
    }
    case Layout::Stepped: {
      Shape bs(nd);
      std::vector<int64_t> start(nd), step(nd);
      for (size_t i = 0; i < nd; ++i) {
        start[i] = gen.randint(0, 3);
        step[i] = gen.randint(1, 4);
        bs[i] = start[i] + std::max<int64_t>(shape[i] - 1, 0) * step[i] + 1 + gen.randint(0, 2);
      }
      Array v = Array::normal(bs, gen, 0.0, scale, dt);
      for (size_t i = 0; i < nd; ++i)
        v = v.slice(static_cast<int64_t>(i), start[i], start[i] + shape[i] * step[i], step[i]);
      REQUIRE(v.shape() == shape);
      return v;
    }
    case Layout::Expanded: {
      Shape bs = shape;
      for (size_t i = 0; i < nd; ++i)
        if (gen.uniform() < 0.5) bs[i] = 1;
      Array v = Array::normal(bs, gen, 0.0, scale, dt).expand(shape);
      REQUIRE(v.shape() == shape);
      return v;
    }
    case Layout::PermutedStepped: {
      std::vector<int64_t> perm(nd);
      std::iota(perm.begin(), perm.end(), 0);
      std::reverse(perm.begin(), perm.end());
      Shape bs(nd);
      for (size_t i = 0; i < nd; ++i) bs[i] = shape[perm[i]];
      Array v = random_view(gen, bs, dt, Layout::Stepped, scale).permute(perm);  // reverse is its own inverse
      REQUIRE(v.shape() == shape);
      return v;
    }
    default:
      FAIL("bad layout");
  }
  return {};
}

inline Layout random_layout(Generator& gen) {
  return static_cast<Layout>(gen.randint(0, static_cast<int64_t>(Layout::Count)));
}

// A random shape of 1..max_nd dims with sizes in [lo, hi].
inline Shape random_shape(Generator& gen, int64_t max_nd = 4, int64_t lo = 1, int64_t hi = 5) {
  Shape s(static_cast<size_t>(gen.randint(1, max_nd + 1)));
  for (auto& d : s) d = gen.randint(lo, hi + 1);
  return s;
}

// A shape that broadcasts to `out`: some leading dims dropped, some dims set to 1.
inline Shape broadcastable_to(Generator& gen, const Shape& out) {
  const int64_t drop = gen.randint(0, static_cast<int64_t>(out.size()) + 1);
  Shape s(out.begin() + drop, out.end());
  for (auto& d : s)
    if (gen.uniform() < 0.3) d = 1;
  return s;
}

// Catch matcher-free helper: the message of the Error that fn throws ("" if none).
template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace qkvlab::testing
