// Reductions against reference loops: sum/mean over axis sets with keepdim, max/argmax ties and NaN, sum_to,
// accuracy of big float sums, identical results on any thread count.
#include "tests/tensor/test_ops_util.h"

#include "tensor/parallel.h"

using namespace qkvlab;
using namespace qkvlab::testing;

namespace {

// Reference sum over the dims in `mask`, output in keepdim layout (reduced dims of size 1).
Ref ref_sum(const Ref& in, const std::vector<bool>& mask) {
  Shape ks = in.shape;
  for (size_t d = 0; d < ks.size(); ++d)
    if (mask[d]) ks[d] = 1;
  Ref out(ks);
  for_each_index(in.shape, [&](const Index& i) {
    Index o = i;
    for (size_t d = 0; d < o.size(); ++d)
      if (mask[d]) o[d] = 0;
    out[o] += in[i];
  });
  return out;
}

// Drops the size-1 reduced dims of a keepdim-layout reference (keepdim = false).
Ref squeeze_dims(const Ref& r, const std::vector<bool>& mask) {
  Shape s;
  for (size_t d = 0; d < r.shape.size(); ++d)
    if (!mask[d]) s.push_back(r.shape[d]);
  Ref out(s);
  out.v = r.v;
  return out;
}

}  // namespace

TEST_CASE("sum and mean over any axis set, keepdim or not, on every layout", "[ops]") {
  Generator gen(21);
  for (DType dt : {DType::F32, DType::F64}) {
    for (int trial = 0; trial < 120; ++trial) {
      const Shape shape = random_shape(gen, 4, 1, 6);
      const int64_t nd = static_cast<int64_t>(shape.size());
      const Layout layout = static_cast<Layout>(trial % static_cast<int>(Layout::Count));
      Array a = random_view(gen, shape, dt, layout);
      // a random subset of dims, written with negative indices half the time; empty = all
      std::vector<int64_t> dims;
      std::vector<bool> mask(shape.size(), false);
      for (int64_t d = 0; d < nd; ++d)
        if (gen.uniform() < 0.5) {
          dims.push_back(gen.uniform() < 0.5 ? d - nd : d);
          mask[d] = true;
        }
      if (dims.empty()) std::fill(mask.begin(), mask.end(), true);
      const bool keepdim = trial % 2 == 0;
      INFO(dtype_name(dt) << " " << layout_name(layout) << " " << shape_str(shape) << " dims " << shape_str(dims)
                          << " keepdim " << keepdim);
      const Ref s = ref_sum(read(a), mask);
      int64_t count = 1;
      for (size_t d = 0; d < mask.size(); ++d)
        if (mask[d]) count *= shape[d];
      Ref m = s;
      for (double& x : m.v) x /= static_cast<double>(count);
      const Array gs = sum(a, dims, keepdim), gm = mean(a, dims, keepdim);
      CHECK(gs.dtype() == dt);
      CHECK(gs.is_contiguous());
      CHECK(ref_rel_diff(gs, keepdim ? s : squeeze_dims(s, mask)) < tol(dt));
      CHECK(ref_rel_diff(gm, keepdim ? m : squeeze_dims(m, mask)) < tol(dt));
    }
  }
}

TEST_CASE("reductions: shapes, empty inputs and errors", "[ops]") {
  Array a = Array::ones({2, 3, 4});
  CHECK(sum(a).ndim() == 0);
  CHECK(sum(a).item() == 24.0);
  CHECK(sum(a, {}, true).shape() == Shape{1, 1, 1});
  CHECK(sum(a, {0, 2}).shape() == Shape{3});
  CHECK(sum(a, {-1}, true).shape() == Shape{2, 3, 1});
  CHECK(mean(Array::scalar(5.0)).item() == 5.0);
  CHECK(sum(Array::zeros({0, 3}), {0}).to_vector() == std::vector<double>{0, 0, 0});
  CHECK(sum(Array::zeros({0, 3})).item() == 0.0);
  CHECK(std::isnan(mean(Array::zeros({0, 3})).item()));  // the mean of nothing, as NumPy/PyTorch
  CHECK(sum(Array::zeros({3, 0}), {0}).shape() == Shape{0});
  CHECK_THROWS_WITH(sum(a, {3}), "sum: dim 3 is out of range for a tensor with 3 dims");
  CHECK_THROWS_WITH(mean(a, {1, -2}), "mean: dim -2 appears twice in (1,-2)");
  CHECK_THROWS_WITH(sum(Array::arange(3, DType::I64)), "sum: expected a floating-point tensor, got int64");
}

TEST_CASE("a float32 sum of 1e6 elements is accurate to 1e-6 relative", "[ops]") {
  const int saved = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Generator gen(22);
    const int64_t n = 1000000;
    Array a = Array::uniform({n}, gen, 0.0, 1.0);
    const std::vector<float> v = a.to_floats();
    long double exact = 0;
    for (float x : v) exact += x;
    CHECK(std::abs(sum(a).item() - double(exact)) / double(exact) < 1e-6);
    CHECK(std::abs(mean(a).item() - double(exact / n)) / double(exact / n) < 1e-6);
    // many rows reduced along a short dim, and a few long columns (the bias-gradient shape)
    Array m = a.view({1000, 1000});
    const Array cols = sum(m, {0});
    const Array rows = sum(m, {1});
    double worst = 0;
    for (int64_t j = 0; j < 1000; j += 97) {
      long double c = 0, r = 0;
      for (int64_t i = 0; i < 1000; ++i) {
        c += v[i * 1000 + j];
        r += v[j * 1000 + i];
      }
      worst = std::max({worst, std::abs(cols.at({j}) - double(c)) / double(c), std::abs(rows.at({j}) - double(r)) / double(r)});
    }
    CHECK(worst < 1e-6);
    // 1e6 copies of 0.1f: a naive float loop would be off by ~1%
    CHECK(std::abs(sum(Array::full({n}, 0.1)).item() - 0.1f * 1e6) < 1e-6 * 1e5);
  }
  set_num_threads(saved);
}

TEST_CASE("sum gives bit-identical results on 1, 2 and 3 threads", "[ops]") {
  const int saved = num_threads();
  Generator gen(23);
  Array a = Array::normal({64, 700, 9}, gen);
  Array t = a.permute({2, 0, 1});
  std::vector<std::vector<double>> results;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<double> r;
    for (const auto& dims : std::vector<std::vector<int64_t>>{{}, {0}, {1}, {2}, {0, 1}, {1, 2}}) {
      auto s = sum(t, dims).to_vector();
      r.insert(r.end(), s.begin(), s.end());
    }
    results.push_back(r);
  }
  set_num_threads(saved);
  CHECK(results[0] == results[1]);
  CHECK(results[0] == results[2]);
}

TEST_CASE("sum over the leading dims of a contiguous array (a bias gradient): each column's sum in double",
          "[ops]") {
  // The fast path for (..., C >= 16) summed to (C): each column in double, rows in order, on any thread count, so
  // the same bits as the running sum written out here ((7, 9) takes the general walk: for so few rows, the same).
  const int saved = num_threads();
  Generator gen(29);
  // 64 columns at a time in registers, then the rest: C = 64, 256 (whole groups), 100, 130 (a rest of 36, 2)
  for (const Shape& shape : {Shape{3000, 100}, Shape{40, 50, 130}, Shape{7, 9}, Shape{2048, 64}, Shape{300, 256}}) {
    const Array a = Array::normal(shape, gen);
    const int64_t C = shape.back(), R = a.numel() / C;
    const std::vector<double> x = a.to_vector();
    std::vector<float> want(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      double s = 0.0;
      for (int64_t r = 0; r < R; ++r) s += static_cast<double>(static_cast<float>(x[size_t(r * C + c)]));
      want[size_t(c)] = static_cast<float>(s);
    }
    std::vector<int64_t> dims;
    for (size_t d = 0; d + 1 < shape.size(); ++d) dims.push_back(int64_t(d));
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      const std::vector<double> got = sum(a, dims).to_vector();
      std::vector<float> gotf(got.begin(), got.end());
      INFO(shape_str(shape) << " threads " << threads);
      CHECK(gotf == want);
    }
  }
  // Rows in order, seen in the result: a column of 1, 2^60, -2^60, 0, ... sums to 0 in that order (1 + 2^60 rounds
  // to 2^60 in double) and to 1 in most others.
  for (const Shape& shape : {Shape{2048, 64}, Shape{500, 100}}) {
    Array a = Array::zeros(shape);
    for (int64_t c = 0; c < shape[1]; ++c) {
      a.set({0, c}, 1.0);
      a.set({1, c}, std::ldexp(1.0, 60));
      a.set({2, c}, -std::ldexp(1.0, 60));
    }
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      INFO(shape_str(shape) << " threads " << threads);
      CHECK(sum(a, {0}).to_vector() == std::vector<double>(size_t(shape[1]), 0.0));
    }
  }
  set_num_threads(saved);
}

TEST_CASE("max and argmax along a dim, with ties to the lowest index and NaN winning", "[ops]") {
  Generator gen(24);
  for (DType dt : {DType::F32, DType::F64}) {
    for (int trial = 0; trial < 60; ++trial) {
      const Shape shape = random_shape(gen);
      const int64_t nd = static_cast<int64_t>(shape.size());
      const Layout layout = static_cast<Layout>(trial % static_cast<int>(Layout::Count));
      Array a = random_view(gen, shape, dt, layout);
      if (trial % 3 == 0 && layout != Layout::Expanded) a.copy_(Array::scalar(1.0, dt).expand(shape));  // all ties
      if (trial % 3 == 1 && layout != Layout::Expanded) {  // coarse values: many ties
        Array r = Array::zeros(shape, dt);
        for_each_index(shape, [&](const Index& i) { r.set(i, double(gen.randint(0, 3))); });
        a.copy_(r);
      }
      const int64_t dim = gen.randint(-nd, nd);
      const int64_t d = dim < 0 ? dim + nd : dim;
      const bool keepdim = gen.uniform() < 0.5;
      Shape ks = shape;
      ks[d] = 1;
      Ref vmax(ks), imax(ks);
      const Ref in = read(a);
      for_each_index(ks, [&](const Index& o) {
        Index i = o;
        double best = -INFINITY;
        int64_t bi = -1;
        for (int64_t k = 0; k < shape[d]; ++k) {
          i[d] = k;
          if (bi < 0 || in[i] > best) best = in[i], bi = k;
        }
        vmax[o] = best;
        imax[o] = double(bi);
      });
      if (!keepdim) {
        vmax.shape.erase(vmax.shape.begin() + d);
        imax.shape.erase(imax.shape.begin() + d);
      }
      INFO(dtype_name(dt) << " " << layout_name(layout) << " " << shape_str(shape) << " dim " << dim);
      const Array mx = max(a, dim, keepdim), am = argmax(a, dim, keepdim);
      CHECK(mx.dtype() == dt);
      CHECK(am.dtype() == DType::I64);
      CHECK(ref_diff(mx, vmax) == 0.0);
      CHECK(ref_diff(am, imax) == 0.0);
    }
  }
  Array n = Array::from_vector(std::vector<float>{1, 5, NAN, 7, NAN}, {5});
  CHECK(std::isnan(max(n, 0).item()));
  CHECK(argmax(n, 0).item() == 2.0);
  CHECK(argmax(Array::from_vector(std::vector<float>{-INFINITY, -INFINITY}, {2}), 0).item() == 0.0);
  CHECK(argmax(Array::from_vector(std::vector<float>{3, 1, 3}, {3}), -1).item() == 0.0);
  // The NaN wins wherever it is, the first one; -0 and +0 tie, the first kept (its sign too).
  CHECK(argmax(Array::from_vector(std::vector<float>{NAN, 9, NAN}, {3}), 0).item() == 0.0);
  CHECK(argmax(Array::from_vector(std::vector<float>{1, 9, 2, NAN}, {4}), 0).item() == 3.0);
  CHECK(std::isnan(max(Array::from_vector(std::vector<float>{1, 9, 2, NAN}, {4}), 0).item()));
  CHECK(argmax(Array::from_vector(std::vector<float>{-0.0f, 0.0f}, {2}), 0).item() == 0.0);
  CHECK(std::signbit(max(Array::from_vector(std::vector<float>{-0.0f, 0.0f}, {2}), 0).item()));
  CHECK(max(Array::scalar(2.0), 0).item() == 2.0);
  CHECK_THROWS_WITH(max(Array::zeros({2, 0}), 1), "max: cannot reduce over dim 1 of size 0 in (2,0)");
  CHECK(max(Array::zeros({0, 2}), 1).shape() == Shape{0});
  CHECK_THROWS_WITH(argmax(Array::zeros({2, 2}), 2), "argmax: dim 2 is out of range for a tensor with 2 dims");
}

TEST_CASE("max_all over every layout, NaN and empty", "[ops]") {
  Generator gen(25);
  for (int trial = 0; trial < 20; ++trial) {
    const Shape shape = random_shape(gen);
    Array a = random_view(gen, shape, trial % 2 ? DType::F64 : DType::F32, random_layout(gen));
    const Ref r = read(a);
    CHECK(max_all(a) == *std::max_element(r.v.begin(), r.v.end()));
  }
  CHECK(std::isnan(max_all(Array::from_vector(std::vector<double>{1, NAN, 3}, {3}))));
  CHECK(max_all(Array::full({2, 2}, -INFINITY)) == -INFINITY);
  CHECK_THROWS_WITH(max_all(Array::zeros({0})), "max_all: expected a non-empty array, got shape (0,)");
}

TEST_CASE("sum_to reduces a broadcast result back to the operand's shape", "[ops]") {
  Generator gen(26);
  for (DType dt : {DType::F32, DType::F64}) {
    for (int trial = 0; trial < 60; ++trial) {
      const Shape big = random_shape(gen);
      const Shape small = broadcastable_to(gen, big);
      Array g = random_view(gen, big, dt, random_layout(gen));
      // reference: every element of g adds into the element of `small` it was broadcast from
      Ref want(small);
      const Ref rg = read(g);
      for_each_index(big, [&](const Index& i) {
        Index j(small.size());
        const size_t lead = big.size() - small.size();
        for (size_t d = 0; d < small.size(); ++d) j[d] = small[d] == 1 ? 0 : i[lead + d];
        want[j] += rg[i];
      });
      INFO(shape_str(big) << " -> " << shape_str(small));
      const Array got = sum_to(g, small);
      CHECK(got.shape() == small);
      CHECK(ref_rel_diff(got, want) < tol(dt));
    }
  }
  // same shape: a new array with the same values, not the input's storage
  Array x = Array::ones({2, 3});
  Array y = sum_to(x, {2, 3});
  CHECK_FALSE(y.shares_storage(x));
  CHECK(max_abs_diff(x, y) == 0.0);
  CHECK(sum_to(Array::ones({2, 3}), {}).item() == 6.0);
  CHECK(sum_to(Array::ones({1, 1}), {1}).shape() == Shape{1});
  CHECK(sum_to(Array::ones({0, 3}), {1, 3}).to_vector() == std::vector<double>{0, 0, 0});
  CHECK_THROWS_WITH(sum_to(Array::ones({2, 3}), {4}),
                    "sum_to: cannot reduce (2,3) to (4,) (the target must broadcast to the source)");
  CHECK_THROWS_WITH(sum_to(Array::ones({3}), {2, 3}),
                    "sum_to: cannot reduce (3,) to (2,3) (the target must broadcast to the source)");
  CHECK_THROWS_WITH(sum_to(Array::ones({1, 3}), {2, 3}),
                    "sum_to: cannot reduce (1,3) to (2,3) (the target must broadcast to the source)");
}
