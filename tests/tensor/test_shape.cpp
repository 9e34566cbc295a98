// Dims (tensor/shape.h), the list type of shapes and strides: std::vector<int64_t>'s behaviour, checked against a
// std::vector run through the same random edits, on both sides of the inline capacity.
#include <catch2/catch.hpp>

#include <utility>
#include <vector>

#include "tensor/array.h"
#include "tensor/ops.h"
#include "tensor/random.h"
#include "tensor/shape.h"

using namespace qkvlab;

namespace {
bool same(const Dims& d, const std::vector<int64_t>& v) {
  if (d.size() != v.size() || d.empty() != v.empty()) return false;
  for (size_t i = 0; i < v.size(); ++i)
    if (d[i] != v[i]) return false;
  return std::vector<int64_t>(d) == v && d == v;
}
}  // namespace

TEST_CASE("Dims: random edits match std::vector<int64_t>, inline and on the heap", "[tensor][shape]") {
  Generator gen(7);
  auto pick = [&](int64_t n) { return int64_t(gen.uniform() * double(n)); };  // 0 .. n-1
  Dims d;
  std::vector<int64_t> v;
  size_t max_size = 0;
  bool shrank_from_heap = false;
  for (int step = 0; step < 20000; ++step) {
    const int64_t value = pick(1000) - 500;
    const size_t pos = size_t(pick(int64_t(v.size()) + 1));  // 0 .. size
    switch (pick(12)) {
      case 0:
      case 1:
        d.push_back(value), v.push_back(value);
        break;
      case 2:
        if (!v.empty()) d.pop_back(), v.pop_back();
        break;
      case 3: {
        auto it = d.insert(d.begin() + pos, value);
        v.insert(v.begin() + pos, value);
        REQUIRE(it - d.begin() == int64_t(pos));
        break;
      }
      case 4: {  // a range from a vector, and a range from inside the Dims itself
        const std::vector<int64_t> r{value, value + 1, value + 2};
        d.insert(d.begin() + pos, r.begin(), r.end());
        v.insert(v.begin() + pos, r.begin(), r.end());
        const size_t len = size_t(pick(int64_t(v.size()) + 1)), from = size_t(pick(int64_t(v.size() - len) + 1));
        const size_t at = size_t(pick(int64_t(v.size()) + 1));
        const std::vector<int64_t> copy(v.begin() + from, v.begin() + from + len);
        d.insert(d.begin() + at, d.begin() + from, d.begin() + from + len);
        v.insert(v.begin() + at, copy.begin(), copy.end());
        break;
      }
      case 5:
        d.insert(d.begin() + pos, {value, -value});
        v.insert(v.begin() + pos, {value, -value});
        break;
      case 6:
        if (!v.empty() && pos < v.size()) {
          auto it = d.erase(d.begin() + pos);
          v.erase(v.begin() + pos);
          REQUIRE(it - d.begin() == int64_t(pos));
        }
        break;
      case 7: {
        const size_t last = pos + size_t(pick(int64_t(v.size() - pos) + 1));
        d.erase(d.begin() + pos, d.begin() + last);
        v.erase(v.begin() + pos, v.begin() + last);
        break;
      }
      case 8: {
        const size_t n = size_t(pick(14));
        if (d.size() > Dims::kInline && n <= Dims::kInline) shrank_from_heap = true;
        d.resize(n, value), v.resize(n, value);
        break;
      }
      case 9: {  // copies and moves keep the values and leave the source usable
        Dims copy(d);
        REQUIRE(same(copy, v));
        Dims moved(std::move(copy));
        REQUIRE(same(moved, v));
        copy = {1, 2};
        REQUIRE(same(copy, {1, 2}));
        d = moved;
        Dims other;
        other = std::move(moved);
        REQUIRE(same(other, v));
        d = std::move(other);
        break;
      }
      case 10:
        d.insert(d.begin() + pos, size_t(3), value);
        v.insert(v.begin() + pos, size_t(3), value);
        break;
      case 11:
        if (v.size() > 20) d.clear(), v.clear();  // keep sizes near the inline capacity
        break;
    }
    INFO("step " << step);
    REQUIRE(same(d, v));
    max_size = std::max(max_size, v.size());
  }
  CHECK(max_size > 2 * Dims::kInline);  // the walk went well onto the heap, and back
  CHECK(shrank_from_heap);
}

TEST_CASE("Dims: construction, comparison and conversion", "[tensor][shape]") {
  const std::vector<int64_t> v{4, 3, 2};
  const Dims from_vector(v), from_list{4, 3, 2}, from_range(v.begin(), v.end()), sized(size_t(3), int64_t(7));
  CHECK(from_vector == from_list);
  CHECK(from_range == v);
  CHECK(sized == Dims{7, 7, 7});
  CHECK(Dims(size_t(2)) == Dims{0, 0});
  CHECK(from_list != Dims{4, 3});
  CHECK(Dims{4, 3} < from_list);
  CHECK(std::vector<int64_t>(from_list) == v);
  CHECK(Dims{}.empty());
  CHECK(shape_str(from_list) == "(4,3,2)");
  Dims big(size_t(9), int64_t(1));  // past the inline capacity
  big.back() = 5;
  CHECK(big.size() == 9);
  CHECK(big.capacity() >= 9);
  CHECK(shape_numel(big) == 5);
}

TEST_CASE("Dims: arrays with more dims than the inline capacity", "[tensor][shape]") {
  // 8 dims: shape and strides live on the heap; views and copies of them behave as with fewer dims
  Array a = Array::arange(2 * 1 * 3 * 1 * 2 * 1 * 2 * 2).reshape({2, 1, 3, 1, 2, 1, 2, 2});
  REQUIRE(a.ndim() == 8);
  Array p = a.permute({7, 6, 5, 4, 3, 2, 1, 0});
  CHECK(p.shape() == Shape{2, 2, 1, 2, 1, 3, 1, 2});
  Array back = p.permute({7, 6, 5, 4, 3, 2, 1, 0}).contiguous();
  CHECK(back.shape() == a.shape());
  CHECK(back.to_vector() == a.to_vector());
  Array s = sum(a, {1, 3, 5});
  CHECK(s.shape() == Shape{2, 3, 2, 2, 2});
  CHECK(s.to_vector() == a.reshape({2, 3, 2, 2, 2}).to_vector());
}
