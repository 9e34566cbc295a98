// Elementwise kernels against reference loops: every layout, broadcasting, both float dtypes, errors.
#include "tests/tensor/test_ops_util.h"

#include "tensor/parallel.h"

using namespace qkvlab;
using namespace qkvlab::testing;

namespace {

struct UnaryCase {
  const char* name;
  std::function<Array(const Array&)> op;
  std::function<double(double)> ref;
  bool positive;  // needs x > 0
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](const Array& a) { return neg(a); }, [](double x) { return -x; }, false},
      {"exp", [](const Array& a) { return exp(a); }, [](double x) { return std::exp(x); }, false},
      {"log", [](const Array& a) { return log(a); }, [](double x) { return std::log(x); }, true},
      {"sqrt", [](const Array& a) { return sqrt(a); }, [](double x) { return std::sqrt(x); }, true},
      {"tanh", [](const Array& a) { return tanh(a); }, [](double x) { return std::tanh(x); }, false},
      {"relu", [](const Array& a) { return relu(a); }, [](double x) { return x > 0 ? x : 0.0; }, false},
      {"gelu", [](const Array& a) { return gelu(a); },
       [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, false},
      {"abs", [](const Array& a) { return abs(a); }, [](double x) { return std::abs(x); }, false},
      {"sign", [](const Array& a) { return sign(a); }, [](double x) { return double((x > 0) - (x < 0)); }, false},
      {"pow 3", [](const Array& a) { return pow(a, 3.0); }, [](double x) { return x * x * x; }, false},
      {"pow 2", [](const Array& a) { return pow(a, 2.0); }, [](double x) { return x * x; }, false},
      {"pow 0.5", [](const Array& a) { return pow(a, 0.5); }, [](double x) { return std::sqrt(x); }, true},
      {"pow -1.5", [](const Array& a) { return pow(a, -1.5); }, [](double x) { return std::pow(x, -1.5); }, true},
      {"add scalar", [](const Array& a) { return a + 2.5; }, [](double x) { return x + 2.5; }, false},
      {"mul scalar", [](const Array& a) { return -1.5 * a; }, [](double x) { return -1.5 * x; }, false},
      {"rsub", [](const Array& a) { return rsub(1.0, a); }, [](double x) { return 1.0 - x; }, false},
      {"rdiv", [](const Array& a) { return rdiv(3.0, a); }, [](double x) { return 3.0 / x; }, true},
      {"isfinite_mask", [](const Array& a) { return isfinite_mask(a); }, [](double) { return 1.0; }, false},
  };
}

struct BinaryCase {
  const char* name;
  std::function<Array(const Array&, const Array&)> op;
  std::function<double(double, double)> ref;
  bool positive;
};

std::vector<BinaryCase> binary_cases() {
  return {
      {"add", [](const Array& a, const Array& b) { return a + b; }, [](double x, double y) { return x + y; }, false},
      {"sub", [](const Array& a, const Array& b) { return a - b; }, [](double x, double y) { return x - y; }, false},
      {"mul", [](const Array& a, const Array& b) { return a * b; }, [](double x, double y) { return x * y; }, false},
      {"div", [](const Array& a, const Array& b) { return a / b; }, [](double x, double y) { return x / y; }, true},
      {"pow", [](const Array& a, const Array& b) { return pow(a, b); },
       [](double x, double y) { return std::pow(x, y); }, true},
      {"maximum", [](const Array& a, const Array& b) { return maximum(a, b); },
       [](double x, double y) { return std::max(x, y); }, false},
      {"minimum", [](const Array& a, const Array& b) { return minimum(a, b); },
       [](double x, double y) { return std::min(x, y); }, false},
      {"eq", [](const Array& a, const Array& b) { return eq(a, b); }, [](double x, double y) { return double(x == y); },
       false},
      {"gt", [](const Array& a, const Array& b) { return gt(a, b); }, [](double x, double y) { return double(x > y); },
       false},
      {"lt", [](const Array& a, const Array& b) { return lt(a, b); }, [](double x, double y) { return double(x < y); },
       false},
      {"gelu_backward", [](const Array& a, const Array& b) { return gelu_backward(a, b); },
       [](double x, double g) {
         return g * (0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI));
       },
       false},
  };
}

// Values in [0.5, 2.5) for ops that need a positive domain; else as generated.
Array domain(const Array& a, bool positive) { return positive ? add(abs(a), 0.5) : a; }

}  // namespace

TEST_CASE("unary ops match the reference on every layout and dtype", "[ops]") {
  Generator gen(11);
  for (DType dt : {DType::F32, DType::F64}) {
    for (const auto& c : unary_cases()) {
      for (int trial = 0; trial < 12; ++trial) {
        const Shape shape = random_shape(gen);
        const Layout layout = static_cast<Layout>(trial % static_cast<int>(Layout::Count));
        Array raw = random_view(gen, shape, dt, layout);
        // Keep the awkward layout for positive domains too: write the transformed values back into the view.
        Array a = raw;
        if (c.positive && layout != Layout::Expanded) a.copy_(domain(raw, true));
        else if (c.positive) a = domain(raw, true).expand(shape);
        INFO(c.name << " " << dtype_name(dt) << " " << layout_name(layout) << " " << shape_str(shape));
        const Ref in = read(a);
        Ref want(shape);
        for (size_t i = 0; i < in.v.size(); ++i) want.v[i] = c.ref(in.v[i]);
        const Array got = c.op(a);
        CHECK(got.dtype() == dt);
        CHECK(got.is_contiguous());
        CHECK(ref_rel_diff(got, want) < tol(dt));
      }
    }
  }
}

TEST_CASE("binary ops broadcast like NumPy on every layout", "[ops]") {
  Generator gen(12);
  for (DType dt : {DType::F32, DType::F64}) {
    for (const auto& c : binary_cases()) {
      for (int trial = 0; trial < 16; ++trial) {
        const Shape out = random_shape(gen);
        Shape sa = broadcastable_to(gen, out), sb = broadcastable_to(gen, out);
        if (trial % 2) std::swap(sa, sb);
        Array a = domain(random_view(gen, sa, dt, random_layout(gen)), c.positive);
        Array b = domain(random_view(gen, sb, dt, random_layout(gen)), c.positive);
        if (trial % 4 == 3) b = a.expand(broadcast_shapes(sa, sb, "t")).contiguous();  // equal values for eq
        const Shape os = broadcast_shapes(a.shape(), b.shape(), "test");
        INFO(c.name << " " << dtype_name(dt) << " " << shape_str(a.shape()) << " " << shape_str(b.shape()));
        const Ref ra = read(a), rb = read(b);
        Ref want(os);
        for_each_index(os, [&](const Index& i) { want[i] = c.ref(bcast_at(ra, i), bcast_at(rb, i)); });
        const Array got = c.op(a, b);
        CHECK(got.dtype() == dt);
        CHECK(got.shape() == os);
        CHECK(ref_rel_diff(got, want) < tol(dt));
      }
    }
  }
}

TEST_CASE("broadcasting edge cases: (1,) vs (1,1), size-0 dims, 0-d", "[ops]") {
  Array a = Array::full({1}, 2.0), b = Array::full({1, 1}, 3.0);
  CHECK((a + b).shape() == Shape{1, 1});
  CHECK((a + b).item() == 5.0);
  CHECK((b * a).shape() == Shape{1, 1});
  // size-0 dims broadcast with 1 and with 0, never with other sizes
  CHECK((Array::zeros({0, 3}) + Array::ones({1, 3})).shape() == Shape{0, 3});
  CHECK((Array::zeros({0}) + Array::ones({1})).shape() == Shape{0});
  CHECK((Array::zeros({2, 0}) * Array::ones({0})).shape() == Shape{2, 0});
  CHECK((Array::zeros({4, 0, 2}) - Array::ones({1, 2})).shape() == Shape{4, 0, 2});
  CHECK_THROWS_WITH(Array::zeros({0}) + Array::ones({2}), "add: cannot broadcast (0,) with (2,)");
  CHECK(exp(Array::zeros({3, 0})).shape() == Shape{3, 0});
  // 0-d with anything
  Array s = Array::scalar(4.0);
  CHECK((s + s).ndim() == 0);
  CHECK((s * Array::ones({2, 3})).shape() == Shape{2, 3});
  CHECK((Array::ones({2, 3}) / s).at({1, 2}) == 0.25);
  CHECK_THROWS_WITH(Array::zeros({3, 4}) + Array::zeros({5}), "add: cannot broadcast (3,4) with (5,)");
  CHECK_THROWS_WITH(mul(Array::zeros({2, 3}), Array::zeros({3, 2})), "mul: cannot broadcast (2,3) with (3,2)");
}

TEST_CASE("elementwise ops reject int64 and mixed dtypes with clear messages", "[ops]") {
  Array i = Array::arange(3, DType::I64), f = Array::ones({3}), d = Array::ones({3}, DType::F64);
  CHECK_THROWS_WITH(exp(i), "exp: expected a floating-point tensor, got int64");
  CHECK_THROWS_WITH(add(i, i), "add: expected a floating-point tensor, got int64");
  CHECK_THROWS_WITH(add(f, d), "add: expected operands of the same dtype, got float32 and float64");
  CHECK_THROWS_WITH(mul(d, f), "mul: expected operands of the same dtype, got float64 and float32");
  CHECK_THROWS_WITH(sub(f, i), "sub: expected operands of the same dtype, got float32 and int64");
  CHECK_THROWS_WITH(add(f, Array()), "add: the array is undefined");
  CHECK_THROWS_WITH(where(f, f, d), "where: expected operands of the same dtype, got float32 and float64");
  Array fi = f;
  CHECK_THROWS_WITH(add_(fi, d), "add_: expected operands of the same dtype, got float32 and float64");
}

TEST_CASE("NaN propagates through maximum, minimum, relu and sign", "[ops]") {
  const double nan = std::nan("");
  Array a = Array::from_vector(std::vector<float>{1.f, float(nan), -2.f}, {3});
  Array b = Array::from_vector(std::vector<float>{float(nan), 0.f, -3.f}, {3});
  auto mx = maximum(a, b).to_vector(), mn = minimum(a, b).to_vector();
  CHECK(std::isnan(mx[0]));
  CHECK(std::isnan(mx[1]));
  CHECK(mx[2] == -2.0);
  CHECK(std::isnan(mn[0]));
  CHECK(std::isnan(mn[1]));
  CHECK(mn[2] == -3.0);
  CHECK(std::isnan(relu(a).to_vector()[1]));
  CHECK(std::isnan(sign(a).to_vector()[1]));
  CHECK(sign(Array::zeros({1})).item() == 0.0);
}

TEST_CASE("isfinite_mask, all_finite, max_abs_diff and allclose see NaN and inf", "[ops]") {
  const double inf = INFINITY, nan = std::nan("");
  Array a = Array::from_vector(std::vector<double>{1, inf, -inf, nan, 0}, {5});
  CHECK(isfinite_mask(a).to_vector() == std::vector<double>{1, 0, 0, 0, 1});
  CHECK_FALSE(all_finite(a));
  CHECK_FALSE(all_finite(a.slice(0, 1, 2)));
  CHECK_FALSE(all_finite(a.slice(0, 3, 4)));
  CHECK(all_finite(a.slice(0, 0, 5, 4)));  // elements 0 and 4
  CHECK(all_finite(Array::zeros({0})));
  CHECK(all_finite(Array::arange(4, DType::I64)));
  Array big = Array::zeros({300, 301});
  CHECK(all_finite(big.mT()));
  big.set({299, 7}, nan);
  CHECK_FALSE(all_finite(big.mT()));

  Array x = Array::from_vector(std::vector<float>{1, 2, 3}, {3});
  Array y = Array::from_vector(std::vector<float>{1, 2.5f, 3}, {3});
  CHECK(max_abs_diff(x, y) == 0.5);
  CHECK(max_abs_diff(x, x.to(DType::F64)) == 0.0);  // any dtypes
  CHECK(max_abs_diff(Array::ones({2, 3}), Array::ones({3})) == 0.0);
  CHECK(std::isnan(max_abs_diff(a, a)));  // NaN never passes a "< tol" check
  CHECK(max_abs_diff(a.slice(0, 0, 3), a.slice(0, 0, 3)) == 0.0);  // equal infinities
  CHECK(allclose(x, y, 0.0, 0.6));
  CHECK_FALSE(allclose(x, y));
  CHECK(allclose(x, add(x, 1e-7)));
  CHECK_FALSE(allclose(a, a));
  CHECK(allclose(a.slice(0, 0, 3), a.slice(0, 0, 3)));
  CHECK_THROWS_WITH(max_abs_diff(Array::ones({2}), Array::ones({3})), "max_abs_diff: cannot broadcast (2,) with (3,)");
}

TEST_CASE("where and masked_fill broadcast cond/mask and values", "[ops]") {
  Generator gen(13);
  for (DType dt : {DType::F32, DType::F64}) {
    for (int trial = 0; trial < 30; ++trial) {
      const Shape out = random_shape(gen);
      Array a = random_view(gen, broadcastable_to(gen, out), dt, random_layout(gen));
      Array b = random_view(gen, broadcastable_to(gen, out), dt, random_layout(gen));
      Array cond = gt(random_view(gen, broadcastable_to(gen, out), dt, random_layout(gen)), Array::scalar(0.0, dt));
      if (trial % 3 == 1) cond = cond.to(DType::I64);  // int64 conditions work too
      const Shape os = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "t"), b.shape(), "t");
      const Ref rc = read(cond), ra = read(a), rb = read(b);
      Ref want(os);
      for_each_index(os, [&](const Index& i) { want[i] = bcast_at(rc, i) != 0 ? bcast_at(ra, i) : bcast_at(rb, i); });
      INFO(shape_str(cond.shape()) << shape_str(a.shape()) << shape_str(b.shape()));
      CHECK(ref_diff(where(cond, a, b), want) == 0.0);

      Array x = random_view(gen, out, dt, random_layout(gen));
      Array mask = gt(random_view(gen, broadcastable_to(gen, out), dt, random_layout(gen)), Array::scalar(0.0, dt));
      const Ref rx = read(x), rm = read(mask);
      Ref want2(out);
      for_each_index(out, [&](const Index& i) { want2[i] = bcast_at(rm, i) != 0 ? -1e9 : rx[i]; });
      CHECK(ref_diff(masked_fill(x, mask, -1e9), want2) == 0.0);
    }
  }
  // the mask must broadcast to a's shape, not the other way round
  CHECK_THROWS_WITH(masked_fill(Array::zeros({3}), Array::ones({2, 3}), 0.0),
                    "masked_fill: the mask (2,3) does not broadcast to (3,)");
  CHECK_THROWS_WITH(masked_fill(Array::zeros({2, 3}), Array::ones({2}), 0.0),
                    "masked_fill: cannot broadcast (2,3) with (2,)");
  // -inf fill (the causal mask) stays -inf
  Array m = masked_fill(Array::zeros({2, 2}), Array::from_vector(std::vector<float>{0, 1, 0, 0}, {2, 2}), -INFINITY);
  CHECK(m.at({0, 1}) == -INFINITY);
  CHECK(m.at({1, 0}) == 0.0);
}

TEST_CASE("add_, axpy_ and mul_ update strided destinations in place", "[ops]") {
  Generator gen(14);
  for (DType dt : {DType::F32, DType::F64}) {
    for (int trial = 0; trial < 40; ++trial) {
      // dst: a view into a bigger buffer (never expanded); the rest of the buffer must not change.
      const Shape shape = random_shape(gen);
      Layout lay = random_layout(gen);
      if (lay == Layout::Expanded) lay = Layout::Permuted;
      Array dst = random_view(gen, shape, dt, lay);
      Array whole = dst.as_strided({static_cast<int64_t>(dst.storage()->bytes() / dtype_size(dt))}, {1}, 0);
      const std::vector<double> before_all = whole.to_vector();
      const Ref before = read(dst);
      Array src = random_view(gen, broadcastable_to(gen, shape), dt, random_layout(gen));
      const Ref rs = read(src);
      const int which = trial % 3;
      Ref want(shape);
      for_each_index(shape, [&](const Index& i) {
        const double s = bcast_at(rs, i);
        want[i] = which == 0 ? before[i] + s : which == 1 ? before[i] - 0.75 * s : before[i] * -2.5;
      });
      if (which == 0) add_(dst, src);
      else if (which == 1) axpy_(dst, -0.75, src);
      else mul_(dst, -2.5);
      INFO(layout_name(lay) << " " << shape_str(shape) << " src " << shape_str(src.shape()) << " op " << which);
      CHECK(ref_rel_diff(dst, want) < tol(dt));
      // Elements outside the view are untouched.
      std::vector<bool> inside(before_all.size(), false);
      for_each_index(shape, [&](const Index& i) {
        int64_t off = dst.offset();
        for (size_t k = 0; k < i.size(); ++k) off += i[k] * dst.strides()[k];
        inside[static_cast<size_t>(off)] = true;
      });
      const std::vector<double> after_all = whole.to_vector();
      int64_t changed_outside = 0;
      for (size_t i = 0; i < after_all.size(); ++i) changed_outside += !inside[i] && after_all[i] != before_all[i];
      CHECK(changed_outside == 0);
    }
  }
}

TEST_CASE("in-place ops: errors, broadcasting direction and self-aliasing", "[ops]") {
  Array e = Array::ones({3}).expand({2, 3});
  CHECK_THROWS_WITH(add_(e, Array::ones({2, 3})),
                    "add_: the destination (2,3) is an expanded view (stride 0 on dim 0); several elements share one "
                    "memory location");
  Array d = Array::zeros({3});
  CHECK_THROWS_WITH(add_(d, Array::ones({2, 3})), "add_: cannot broadcast (2,3) to the destination (3,)");
  CHECK_THROWS_WITH(add_(d, Array::ones({2})), "add_: cannot broadcast (2,) to the destination (3,)");
  Array i = Array::arange(3, DType::I64);
  CHECK_THROWS_WITH(mul_(i, 2.0), "mul_: expected a floating-point tensor, got int64");
  // x += x^T reads the old values even though source and destination share memory
  Generator gen(15);
  Array x = Array::normal({5, 5}, gen);
  const Array want = x + x.mT();
  add_(x, x.mT());
  CHECK(max_abs_diff(x, want) == 0.0);
  Array y = Array::normal({6}, gen);
  const Array want2 = y * 2.0;
  add_(y, y);
  CHECK(max_abs_diff(y, want2) == 0.0);
}

TEST_CASE("big arrays use the parallel paths and agree with the reference", "[ops]") {
  Generator gen(16);
  const int saved = num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    // 300 x 257 x 3 (> 2 * grain), non-contiguous: permuted and sliced
    Array base = Array::normal({3, 300, 520}, gen);
    Array a = base.slice(2, 1, 515, 2).permute({1, 2, 0});  // (300,257,3)
    Array b = Array::normal({257, 1}, gen);
    const Ref ra = read(a), rb = read(b);
    Ref want(a.shape());
    for_each_index(a.shape(), [&](const Index& i) { want[i] = ra[i] * bcast_at(rb, i); });
    CHECK(ref_rel_diff(a * b, want) < 1e-6);
    Array c = Array::normal({400000}, gen);
    Array d = exp(c);
    const auto cv = c.to_vector(), dv = d.to_vector();
    double m = 0;
    for (size_t k = 0; k < cv.size(); ++k) m = std::max(m, std::abs(dv[k] - std::exp(cv[k])) / std::exp(cv[k]));
    CHECK(m < 1e-6);
    Array acc = Array::zeros({300, 257, 3});
    add_(acc, a);
    CHECK(max_abs_diff(acc, a) == 0.0);
    Array tview = Array::zeros({3, 257, 300}).permute({2, 1, 0});
    axpy_(tview, 2.0, a);
    CHECK(max_abs_diff(tview, a * 2.0) == 0.0);
  }
  set_num_threads(saved);
}
