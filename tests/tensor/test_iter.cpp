// strided_loop / strided_loop_flat (tensor/iter.h) against a plain odometer over multi-indices.
#include <catch2/catch.hpp>

#include <array>
#include <vector>

#include "tensor/iter.h"
#include "tensor/random.h"

using namespace qkvlab;

namespace {

template <size_t N>
using Visit = std::array<int64_t, N>;  // one element: the offset of each operand

// The reference: every multi-index of `shape` in row-major order, offsets = sum idx[d] * strides[k][d].
template <size_t N>
std::vector<Visit<N>> reference_visits(const Shape& shape, const std::array<Strides, N>& st) {
  std::vector<Visit<N>> out;
  const int64_t n = shape_numel(shape);
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t flat = 0; flat < n; ++flat) {
    int64_t rem = flat;
    for (size_t d = shape.size(); d-- > 0;) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
    }
    Visit<N> v{};
    for (size_t k = 0; k < N; ++k)
      for (size_t d = 0; d < shape.size(); ++d) v[k] += idx[d] * st[k][d];
    out.push_back(v);
  }
  return out;
}

template <size_t N>
std::array<const Strides*, N> ptrs(const std::array<Strides, N>& st) {
  std::array<const Strides*, N> p;
  for (size_t k = 0; k < N; ++k) p[k] = &st[k];
  return p;
}

// Expands each run reported by the loop into its elements.
template <size_t N>
std::vector<Visit<N>> loop_visits(const Shape& shape, const std::array<Strides, N>& st, int64_t* calls = nullptr) {
  std::vector<Visit<N>> out;
  int64_t c = 0;
  strided_loop<N>(shape, ptrs(st), [&](auto off, int64_t n, auto inner) {
    ++c;
    REQUIRE(n >= 1);
    for (int64_t i = 0; i < n; ++i) {
      Visit<N> v;
      for (size_t k = 0; k < N; ++k) v[k] = off[k] + i * inner[k];
      out.push_back(v);
    }
  });
  if (calls) *calls = c;
  return out;
}

template <size_t N>
std::vector<Visit<N>> flat_visits(const Shape& shape, const std::array<Strides, N>& st, int64_t b, int64_t e) {
  std::vector<Visit<N>> out;
  strided_loop_flat<N>(shape, ptrs(st), b, e, [&](auto off, int64_t n, auto inner) {
    REQUIRE(n >= 1);
    for (int64_t i = 0; i < n; ++i) {
      Visit<N> v;
      for (size_t k = 0; k < N; ++k) v[k] = off[k] + i * inner[k];
      out.push_back(v);
    }
  });
  return out;
}

Shape random_shape(Generator& g) {
  Shape s(static_cast<size_t>(g.randint(0, 5)));  // 0-4 dims
  for (auto& d : s) {
    int64_t r = g.randint(0, 10);
    d = r == 0 ? 0 : r <= 2 ? 1 : g.randint(2, 5);  // some size-0 and size-1 dims
  }
  return s;
}

// Strides an operand could have: a permuted (maybe stepped, maybe reversed) layout, or broadcast zeros.
Strides random_strides(Generator& g, const Shape& shape) {
  const size_t nd = shape.size();
  std::vector<size_t> order(nd);
  for (size_t i = 0; i < nd; ++i) order[i] = i;
  if (g.randint(0, 3) > 0)
    for (size_t i = nd; i > 1; --i) std::swap(order[i - 1], order[static_cast<size_t>(g.randint(0, i))]);
  Strides st(nd);
  int64_t acc = 1;
  for (size_t j = nd; j-- > 0;) {
    size_t d = order[j];
    int64_t step = g.randint(0, 4) == 0 ? 2 : 1;
    st[d] = acc * step;
    if (g.randint(0, 6) == 0) st[d] = -st[d];
    if (g.randint(0, 6) == 0) st[d] = 0;  // expanded
    acc *= std::max<int64_t>(shape[d], 1) * step;
  }
  return st;
}

template <size_t N>
void random_trials(uint64_t seed) {
  Generator g(seed);
  for (int trial = 0; trial < 400; ++trial) {
    Shape shape = random_shape(g);
    std::array<Strides, N> st;
    for (size_t k = 0; k < N; ++k) st[k] = random_strides(g, shape);
    INFO("shape " << shape_str(shape) << " strides[0] " << shape_str(st[0]));
    auto ref = reference_visits<N>(shape, st);
    REQUIRE(loop_visits<N>(shape, st) == ref);
    // The flat-range variant: a random sub-range, and a random partition that must add up to the whole.
    const int64_t total = static_cast<int64_t>(ref.size());
    int64_t b = g.randint(0, total + 2), e = g.randint(0, total + 2);
    auto sub = flat_visits<N>(shape, st, b, e);
    std::vector<Visit<N>> want;
    for (int64_t i = b; i < std::min(e, total); ++i) want.push_back(ref[static_cast<size_t>(i)]);
    REQUIRE(sub == want);
    std::vector<Visit<N>> joined;
    int64_t pos = 0;
    while (pos < total) {
      int64_t next = std::min(total, pos + g.randint(1, 7));
      auto part = flat_visits<N>(shape, st, pos, next);
      joined.insert(joined.end(), part.begin(), part.end());
      pos = next;
    }
    REQUIRE(joined == ref);
  }
}

}  // namespace

TEST_CASE("strided_loop visits every element once, in row-major order, 1 operand", "[array][iter]") {
  random_trials<1>(11);
}

TEST_CASE("strided_loop visits every element once, in row-major order, 2 operands", "[array][iter]") {
  random_trials<2>(12);
}

TEST_CASE("strided_loop visits every element once, in row-major order, 3 operands", "[array][iter]") {
  random_trials<3>(13);
}

TEST_CASE("strided_loop merges contiguous dims into one run", "[array][iter]") {
  std::array<Strides, 2> st{contiguous_strides({2, 3, 4}), contiguous_strides({2, 3, 4})};
  int64_t calls = 0;
  std::vector<int64_t> runs;
  strided_loop<2>({2, 3, 4}, ptrs(st), [&](auto off, int64_t n, auto inner) {
    ++calls;
    REQUIRE(off == std::array<int64_t, 2>{0, 0});
    REQUIRE(inner == std::array<int64_t, 2>{1, 1});
    runs.push_back(n);
  });
  REQUIRE(calls == 1);
  REQUIRE(runs == std::vector<int64_t>{24});

  // Size-1 dims (with any stride) do not break the merge.
  std::array<Strides, 1> s1{Strides{12, 99, 4, 1}};
  loop_visits<1>({2, 1, 3, 4}, s1, &calls);
  REQUIRE(calls == 1);

  // A transposed operand stops merging: runs along the last dim, one per row.
  std::array<Strides, 2> tr{Strides{3, 1}, Strides{1, 4}};  // out (4,3) contiguous, in = (3,4)^T
  auto v = loop_visits<2>({4, 3}, tr, &calls);
  REQUIRE(calls == 4);
  REQUIRE(v == reference_visits<2>({4, 3}, tr));

  // A sliced middle dim: the outer two dims cannot merge with it, the inner one can.
  std::array<Strides, 1> sl{Strides{48, 16, 4, 1}};  // (2,6,2,4) with dim 1 taken every other step
  auto w = loop_visits<1>({2, 3, 2, 4}, sl, &calls);
  REQUIRE(calls == 6);  // dims 0,1 merge (6 rows), dims 2,3 merge (runs of 8)
  REQUIRE(w == reference_visits<1>({2, 3, 2, 4}, sl));

  // Broadcast (stride 0) dims merge with each other.
  std::array<Strides, 2> bc{contiguous_strides({3, 5}), Strides{0, 0}};
  loop_visits<2>({3, 5}, bc, &calls);
  REQUIRE(calls == 1);
}

TEST_CASE("strided_loop on 0-d, size-1 and size-0 shapes", "[array][iter]") {
  int64_t calls = 0;
  std::array<Strides, 2> none{Strides{}, Strides{}};
  auto v = loop_visits<2>({}, none, &calls);  // a 0-d shape has one element
  REQUIRE(calls == 1);
  REQUIRE(v == std::vector<Visit<2>>{{0, 0}});

  std::array<Strides, 1> ones{Strides{7, 3, 5}};
  auto w = loop_visits<1>({1, 1, 1}, ones, &calls);
  REQUIRE(calls == 1);
  REQUIRE(w == std::vector<Visit<1>>{{0}});

  for (Shape s : {Shape{0}, Shape{3, 0}, Shape{0, 4}, Shape{2, 0, 3}}) {
    std::array<Strides, 1> c{contiguous_strides(s)};
    REQUIRE(loop_visits<1>(s, c, &calls).empty());
    REQUIRE(calls == 0);
    REQUIRE(flat_visits<1>(s, c, 0, 100).empty());
  }
  // The flat variant on a 0-d shape: index 0 only.
  REQUIRE(flat_visits<2>({}, none, 0, 1).size() == 1);
  REQUIRE(flat_visits<2>({}, none, 1, 2).empty());
  REQUIRE(flat_visits<2>({}, none, 0, 0).empty());
}

TEST_CASE("strided_loop_flat starts mid-row and mid-block", "[array][iter]") {
  std::array<Strides, 2> st{contiguous_strides({3, 4}), Strides{1, 3}};  // the second operand is transposed
  std::vector<std::pair<int64_t, int64_t>> runs;
  strided_loop_flat<2>({3, 4}, ptrs(st), 5, 10, [&](auto off, int64_t n, auto inner) {
    runs.push_back({off[1], n});
    REQUIRE(inner == std::array<int64_t, 2>{1, 3});
  });
  // Elements 5..9 = (1,1),(1,2),(1,3) | (2,0),(2,1): runs start at (1,1) and (2,0).
  REQUIRE(runs == std::vector<std::pair<int64_t, int64_t>>{{1 + 3 * 1, 3}, {2, 2}});
}
