// softmax / log_softmax, layer norm and cross-entropy against reference loops, their backwards against the
// closed forms and central finite differences (float64), and the numerical edge cases the models rely on.
#include "tests/tensor/test_ops_util.h"

#include "tensor/parallel.h"

using namespace qkvlab;
using namespace qkvlab::testing;

namespace {

// Reference softmax (log = false) or log_softmax along dim d, in double.
Ref ref_softmax(const Ref& in, int64_t d, bool log) {
  Ref out(in.shape);
  Shape outer = in.shape;
  outer[d] = 1;
  for_each_index(outer, [&](const Index& o) {
    Index i = o;
    double m = -INFINITY;
    for (int64_t k = 0; k < in.shape[d]; ++k) i[d] = k, m = std::max(m, in[i]);
    double s = 0;
    for (int64_t k = 0; k < in.shape[d]; ++k) i[d] = k, s += std::exp(in[i] - m);
    for (int64_t k = 0; k < in.shape[d]; ++k) {
      i[d] = k;
      out[i] = log ? in[i] - m - std::log(s) : std::exp(in[i] - m) / s;
    }
  });
  return out;
}

// Central finite-difference gradient of f (a scalar function of x, float64) at x.
Array numeric_grad(const std::function<double(const Array&)>& f, const Array& x, double h = 1e-6) {
  Array g = Array::zeros(x.shape(), DType::F64);
  Array xc = x.clone();
  for_each_index(x.shape(), [&](const Index& i) {
    const double v = xc.at(i);
    xc.set(i, v + h);
    const double fp = f(xc);
    xc.set(i, v - h);
    const double fm = f(xc);
    xc.set(i, v);
    g.set(i, (fp - fm) / (2 * h));
  });
  return g;
}

double dot(const Array& a, const Array& b) { return sum(mul(a, b)).item(); }

}  // namespace

TEST_CASE("softmax and log_softmax along any dim, on every layout", "[ops]") {
  Generator gen(31);
  for (DType dt : {DType::F32, DType::F64}) {
    for (int trial = 0; trial < 60; ++trial) {
      const Shape shape = random_shape(gen, 4, 1, 6);
      const int64_t nd = static_cast<int64_t>(shape.size());
      const Layout layout = static_cast<Layout>(trial % static_cast<int>(Layout::Count));
      Array a = random_view(gen, shape, dt, layout, 3.0);
      const int64_t dim = gen.randint(-nd, nd);
      const int64_t d = dim < 0 ? dim + nd : dim;
      INFO(dtype_name(dt) << " " << layout_name(layout) << " " << shape_str(shape) << " dim " << dim);
      const Ref in = read(a);
      const Array y = softmax(a, dim), ly = log_softmax(a, dim);
      CHECK(y.is_contiguous());
      CHECK(ref_rel_diff(y, ref_softmax(in, d, false)) < tol(dt));
      CHECK(ref_rel_diff(ly, ref_softmax(in, d, true)) < tol(dt));
      // backward kernels against their closed forms
      Array g = random_view(gen, shape, dt, random_layout(gen));
      const Ref rg = read(g), ry = read(y), rly = read(ly);
      Ref want(shape), lwant(shape);
      Shape outer = shape;
      outer[d] = 1;
      for_each_index(outer, [&](const Index& o) {
        Index i = o;
        double gy = 0, gs = 0;
        for (int64_t k = 0; k < shape[d]; ++k) i[d] = k, gy += rg[i] * ry[i], gs += rg[i];
        for (int64_t k = 0; k < shape[d]; ++k) {
          i[d] = k;
          want[i] = ry[i] * (rg[i] - gy);
          lwant[i] = rg[i] - std::exp(rly[i]) * gs;
        }
      });
      CHECK(ref_rel_diff(softmax_backward(y, g, dim), want) < 10 * tol(dt));
      CHECK(ref_rel_diff(log_softmax_backward(ly, g, dim), lwant) < 10 * tol(dt));
      // and on strided y (a transposed copy of itself)
      if (nd >= 2) {
        Array yt = y.mT().contiguous().mT();
        CHECK(ref_rel_diff(softmax_backward(yt, g, dim), want) < 10 * tol(dt));
      }
    }
  }
}

TEST_CASE("softmax backward kernels agree with finite differences", "[ops]") {
  Generator gen(32);
  Array x = Array::normal({3, 5}, gen, 0, 2, DType::F64);
  Array g = Array::normal({3, 5}, gen, 0, 1, DType::F64);
  for (int64_t dim : {0, 1}) {
    const Array num = numeric_grad([&](const Array& v) { return dot(softmax(v, dim), g); }, x);
    CHECK(max_abs_diff(softmax_backward(softmax(x, dim), g, dim), num) < 1e-8);
    const Array lnum = numeric_grad([&](const Array& v) { return dot(log_softmax(v, dim), g); }, x);
    CHECK(max_abs_diff(log_softmax_backward(log_softmax(x, dim), g, dim), lnum) < 1e-8);
  }
}

TEST_CASE("softmax numerical edge cases: +-1e4 logits, fully -inf rows, NaN", "[ops]") {
  for (DType dt : {DType::F32, DType::F64}) {
    Array big = Array::from_vector(std::vector<double>{1e4, -1e4, 1e4 - 1, 0}, {1, 4}).to(dt);
    const Array y = softmax(big, -1), ly = log_softmax(big, -1);
    CHECK(all_finite(y));
    const double e = std::exp(-1.0);
    CHECK(y.at({0, 0}) == Approx(1 / (1 + e)));
    CHECK(y.at({0, 2}) == Approx(e / (1 + e)));
    CHECK(y.at({0, 1}) == 0.0);
    CHECK(ly.at({0, 0}) == Approx(-std::log1p(e)));
    CHECK(ly.at({0, 1}) == Approx(-2e4 - std::log1p(e)));
    CHECK(all_finite(ly));
    // fully masked rows (every score -inf): softmax all 0 (no NaN), log_softmax all -inf
    Array m = Array::from_vector(std::vector<double>{-INFINITY, -INFINITY, -INFINITY, 1, 2, -INFINITY}, {2, 3}).to(dt);
    const Array ym = softmax(m, 1), lm = log_softmax(m, 1);
    CHECK(ym.to_vector()[0] == 0.0);
    CHECK(ym.to_vector()[1] == 0.0);
    CHECK(ym.to_vector()[2] == 0.0);
    CHECK(ym.at({1, 2}) == 0.0);
    CHECK(ym.at({1, 1}) == Approx(1 / (1 + e)));
    CHECK(lm.at({0, 1}) == -INFINITY);
    CHECK(std::isfinite(lm.at({1, 0})));
    CHECK(lm.at({1, 2}) == -INFINITY);
    CHECK(all_finite(softmax_backward(ym, Array::ones({2, 3}, dt), 1)));
    // a NaN anywhere in a row makes that row NaN, even next to -inf
    Array n = Array::from_vector(std::vector<double>{-INFINITY, NAN, 0, 1}, {2, 2}).to(dt);
    const Array yn = softmax(n, 1);
    CHECK(std::isnan(yn.at({0, 0})));
    CHECK(std::isnan(yn.at({0, 1})));
    CHECK(std::isfinite(yn.at({1, 0})));
  }
  CHECK(softmax(Array::scalar(3.0), 0).item() == 1.0);
  CHECK(log_softmax(Array::scalar(3.0), -1).item() == 0.0);
  CHECK(softmax(Array::zeros({2, 0}), 1).shape() == Shape{2, 0});
  CHECK_THROWS_WITH(softmax(Array::zeros({2, 3}), 2), "softmax: dim 2 is out of range for a tensor with 2 dims");
  CHECK_THROWS_WITH(softmax_backward(Array::zeros({2, 3}), Array::zeros({3, 2}), 1),
                    "softmax_backward: y (2,3) and grad (3,2) differ in shape");
}

// ---- scaled_causal_softmax: the fused attention softmax against the unfused chain it replaces ----

namespace {

// (T, S) with 1 where query i may not see key j > i + (S - T): nn/attention's causal_mask, rebuilt here.
Array causal_mask_ts(int64_t T, int64_t S, DType dt) {
  Array m = Array::zeros({T, S}, dt);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = std::max<int64_t>(0, i + (S - T) + 1); j < S; ++j) m.set({i, j}, 1.0);
  return m;
}

// The chain sdpa used before the fused op: softmax(masked_fill(x * scale, mask, -inf)), and its backward.
Array chain_forward(const Array& x, double scale, bool causal) {
  Array s = mul(x, scale);
  if (causal) s = masked_fill(s, causal_mask_ts(x.size(-2), x.size(-1), x.dtype()), -INFINITY);
  return softmax(s, -1);
}
Array chain_backward(const Array& p, const Array& g, double scale, bool causal) {
  Array d = softmax_backward(p, g, -1);
  if (causal) d = masked_fill(d, causal_mask_ts(p.size(-2), p.size(-1), p.dtype()), 0.0);
  return mul(d, scale);
}

// Equal element for element up to `tol` (0: the same values), a NaN matching any NaN.
bool same_values(const Array& a, const Array& b, double tol = 0.0) {
  if (a.shape() != b.shape()) return false;
  const std::vector<double> va = a.to_vector(), vb = b.to_vector();
  for (size_t i = 0; i < va.size(); ++i)
    if (!(va[i] == vb[i] || std::abs(va[i] - vb[i]) <= tol || (std::isnan(va[i]) && std::isnan(vb[i])))) return false;
  return true;
}

// How far the fused backward may be from the chain's: 0 in float32. In float64 the chain itself is not one number:
// GCC fuses g * p + s into one multiply-add in scalar loops but not in vectorised ones, so its row sum rounds
// differently with the layout of g and the row length; the two agree to the last bit or two.
double backward_tol(DType dt) { return dt == DType::F32 ? 0.0 : 1e-15; }

// Every entry of x (..., T, S) that the causal mask hides is exactly 0.
bool masked_entries_zero(const Array& y) {
  const int64_t T = y.size(-2), S = y.size(-1);
  const std::vector<double> v = y.contiguous().to_vector();
  for (size_t k = 0; k < v.size(); ++k) {
    const int64_t j = static_cast<int64_t>(k) % S, i = static_cast<int64_t>(k) / S % T;
    if (j > i + (S - T) && v[k] != 0.0) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("scaled_causal_softmax is the chain softmax(masked_fill(x * scale)) bit for bit, and so is its backward",
          "[ops][attention_softmax]") {
  Generator gen(41);
  // (B,H,T,S): square, T < S (a KV cache), T > S (rows that see nothing), S = 1, and sizes off the 8-wide sums.
  const std::vector<Shape> shapes{{2, 3, 5, 5}, {1, 2, 3, 7}, {2, 1, 1, 1},  {1, 1, 4, 1},   {1, 2, 7, 7},
                                  {1, 1, 33, 33}, {2, 1, 4, 33}, {1, 1, 5, 3}, {3, 8, 16}, {2, 1, 1, 9},
                                  {1, 2, 40, 48}, {1, 1, 64, 64},   // S % 16 == 0: whole blocks of 16 keys
                                  {2, 2, 16, 16}, {1, 3, 13, 16}};  // S = 16 without a mask: one vector a row
  for (DType dt : {DType::F32, DType::F64}) {
    for (const Shape& shape : shapes) {
      for (bool causal : {true, false}) {
        for (int layout = 0; layout < 2; ++layout) {  // contiguous, and a permuted (strided) view
          const double scale = 1.0 / std::sqrt(8.0);
          Array x = random_view(gen, shape, dt, layout ? Layout::Permuted : Layout::Contiguous, 3.0);
          INFO(dtype_name(dt) << " " << shape_str(shape) << (causal ? " causal" : "") << (layout ? " permuted" : ""));
          const Array p = scaled_causal_softmax(x, scale, causal);
          CHECK(p.is_contiguous());
          CHECK(same_values(p, chain_forward(x, scale, causal)));
          if (causal) CHECK(masked_entries_zero(p));
          const Array g = random_view(gen, shape, dt, random_layout(gen));
          const Array dx = scaled_causal_softmax_backward(p, g, scale, causal);
          CHECK(same_values(dx, chain_backward(p, g, scale, causal), backward_tol(dt)));
          if (causal) CHECK(masked_entries_zero(dx));
        }
      }
    }
  }
}

// The backward's row sum, sum_j g_j p_j in double, adds the keys in order (as the chain's softmax_backward does). A
// row where that order matters: 2^60, -2^60 and 1 at keys a, a + 1 and a + 2 sum to 1 in key order and to 0 in most
// others. Rows of 16 keys go through the kernel 8 rows at a time (the sums of the 8 side by side) and the rest alone.
TEST_CASE("scaled_causal_softmax_backward sums each row's keys in order", "[ops][attention_softmax]") {
  const int64_t rows = 21, S = 16;
  std::vector<float> p(rows * S, 0.0f), g(rows * S, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t a = r % 14;  // the three keys anywhere in the row, across the middle (keys 7 and 8) too
    for (int64_t j = 0; j < 3; ++j) p[r * S + a + j] = 1.0f;
    g[r * S + a] = 0x1p60f;
    g[r * S + a + 1] = -0x1p60f;
    g[r * S + a + 2] = 1.0f;
  }
  const Array pa = Array::from_vector(p, {1, rows, S}), ga = Array::from_vector(g, {1, rows, S});
  const Array dx = scaled_causal_softmax_backward(pa, ga, 0.5, false);
  const std::vector<double> d = dx.to_vector();
  for (int64_t r = 0; r < rows; ++r) {
    INFO("row " << r);
    const int64_t a = r % 14;
    CHECK(d[size_t(r * S + a + 2)] == 0.0);  // p (g - 1) * scale with the row sum 1: 0 at the third key
    CHECK(d[size_t(r * S + a)] == double(0x1p60f * 0.5f));
  }
}

TEST_CASE("scaled_causal_softmax_ and scaled_causal_softmax_backward_ write the copying ops' bits over their input",
          "[ops][attention_softmax]") {
  Generator gen(43);
  for (DType dt : {DType::F32, DType::F64}) {
    for (const Shape& shape : std::vector<Shape>{{2, 3, 5, 5}, {1, 2, 3, 7}, {1, 1, 33, 33}, {1, 1, 5, 3}, {2, 2, 16, 16}}) {
      for (bool causal : {true, false}) {
        INFO(dtype_name(dt) << " " << shape_str(shape) << (causal ? " causal" : ""));
        const Array x = Array::normal(shape, gen).to(dt), g = Array::normal(shape, gen).to(dt);
        const Array p = scaled_causal_softmax(x, 0.3, causal);
        Array in_place = x.clone();
        scaled_causal_softmax_(in_place, 0.3, causal);
        CHECK(in_place.to_vector() == p.to_vector());
        const Array dx = scaled_causal_softmax_backward(p, g, 0.3, causal);
        Array g_in_place = g.clone();
        scaled_causal_softmax_backward_(p, g_in_place, 0.3, causal);
        CHECK(g_in_place.to_vector() == dx.to_vector());
      }
    }
  }
  Array t = Array::normal({2, 4, 4}, gen).mT();  // a strided view: the kernels would write the wrong rows
  CHECK_THROWS_WITH(scaled_causal_softmax_(t, 1.0, true), Catch::Contains("contiguous"));
  const Array p = scaled_causal_softmax(t, 1.0, true);
  CHECK_THROWS_WITH(scaled_causal_softmax_backward_(p, t, 1.0, true), Catch::Contains("contiguous"));
}

TEST_CASE("scaled_causal_softmax edge cases are softmax's: NaN rows, +inf, fully -inf rows, masked NaN ignored",
          "[ops][attention_softmax]") {
  for (DType dt : {DType::F32, DType::F64}) {
    Generator gen(42);
    // S = 32: the kernel's loops over whole blocks of 16 keys (tensor/ops_nn.cpp)
    for (int64_t S : {6, 32}) {
      INFO(dtype_name(dt) << ", S " << S);
      Array x = Array::normal({1, 2, S - 1, S}, gen, 0, 1, dt);  // T = S - 1: query i sees keys j <= i + 1
      x.set({0, 0, 1, 1}, NAN);        // visible: the row becomes NaN, masked entries included (as softmax)
      x.set({0, 0, 2, 5}, NAN);        // masked: ignored, the row is an ordinary row
      x.set({0, 0, 3, 0}, INFINITY);   // visible +inf: inf - inf = NaN, the whole row NaN (as softmax)
      x.set({0, 0, 4, 5}, INFINITY);   // visible (i = 4 sees every key)
      for (int64_t j = 0; j < S; ++j) x.set({0, 1, 0, j}, -INFINITY);  // fully -inf row: all 0
      for (int64_t j = 0; j < 3; ++j) x.set({0, 1, 1, j}, -INFINITY);  // every visible key -inf, masked ones finite
      const Array p = scaled_causal_softmax(x, 0.5, true);
      CHECK(same_values(p, chain_forward(x, 0.5, true)));
      for (int64_t j = 0; j < S; ++j) CHECK(std::isnan(p.at({0, 0, 1, j})));
      for (int64_t j = 0; j < S; ++j) CHECK(std::isnan(p.at({0, 0, 3, j})));
      for (int64_t j = 0; j < 4; ++j) CHECK(std::isfinite(p.at({0, 0, 2, j})));
      CHECK(p.at({0, 0, 2, 5}) == 0.0);
      for (int64_t j = 0; j < S; ++j) CHECK(p.at({0, 1, 0, j}) == 0.0);
      for (int64_t j = 0; j < S; ++j) CHECK(p.at({0, 1, 1, j}) == 0.0);
      // The backward of those rows: NaN rows stay NaN on visible keys and 0 on masked ones; zero rows give 0.
      const Array g = Array::normal(x.shape(), gen, 0, 1, dt);
      const Array dx = scaled_causal_softmax_backward(p, g, 0.5, true);
      CHECK(same_values(dx, chain_backward(p, g, 0.5, true), backward_tol(dt)));
      CHECK(dx.at({0, 0, 1, S - 1}) == 0.0);
      CHECK(std::isnan(dx.at({0, 0, 1, 0})));
      for (int64_t j = 0; j < S; ++j) CHECK(dx.at({0, 1, 0, j}) == 0.0);
      // A non-finite gradient on a masked key is never read (the chain would make the row NaN through 0 * inf).
      Array g2 = g.clone();
      g2.set({0, 1, 2, 5}, INFINITY);
      const Array dx2 = scaled_causal_softmax_backward(p, g2, 0.5, true);
      CHECK(same_values(dx2.narrow(2, 2, 1), dx.narrow(2, 2, 1)));
    }
    // Rows of 16 keys without a mask (the float kernel's one-vector rows): NaN and inf rows, a fully -inf row and
    // ordinary rows in one group of 8 rows, each as the chain gives it.
    {
      Array x = Array::normal({1, 1, 8, 16}, gen, 0, 1, dt);
      x.set({0, 0, 1, 3}, NAN);
      x.set({0, 0, 2, 15}, INFINITY);
      x.set({0, 0, 4, 0}, -INFINITY);  // one -inf key: probability 0, the row otherwise ordinary
      for (int64_t j = 0; j < 16; ++j) x.set({0, 0, 6, j}, -INFINITY);
      const Array p = scaled_causal_softmax(x, 0.5, false);
      CHECK(same_values(p, chain_forward(x, 0.5, false)));
      // in place (as attention runs it): the group falls back to the generic code at row 1, after reading row 0,
      // which must not have been written yet
      Array in_place = x.clone();
      scaled_causal_softmax_(in_place, 0.5, false);
      CHECK(same_values(in_place, p));
      CHECK(std::isnan(p.at({0, 0, 1, 0})));
      CHECK(std::isnan(p.at({0, 0, 2, 0})));
      CHECK(p.at({0, 0, 4, 0}) == 0.0);
      CHECK(p.at({0, 0, 6, 7}) == 0.0);
      CHECK(std::isfinite(p.at({0, 0, 7, 7})));
    }
    // Empty and 2-D inputs.
    CHECK(scaled_causal_softmax(Array::zeros({2, 0}, dt), 1.0, true).shape() == Shape{2, 0});
    CHECK(scaled_causal_softmax(Array::zeros({0, 3}, dt), 1.0, true).shape() == Shape{0, 3});
    const Array x2 = Array::normal({3, 3}, gen, 0, 1, dt);
    CHECK(same_values(scaled_causal_softmax(x2, 2.0, true), chain_forward(x2, 2.0, true)));
    CHECK(same_values(scaled_causal_softmax(x2.select(0, 1), 2.0, false), softmax(mul(x2.select(0, 1), 2.0), -1)));
  }
  CHECK_THROWS_WITH(scaled_causal_softmax(Array::zeros({4}), 1.0, true),
                    "scaled_causal_softmax: expected (..., T, S) scores (at least 2 dims), got shape (4,)");
  CHECK_THROWS_WITH(scaled_causal_softmax(Array::scalar(1.0), 1.0, false),
                    "scaled_causal_softmax: expected at least 1 dim, got shape ()");
  CHECK_THROWS_WITH(scaled_causal_softmax(Array::zeros({2, 2}, DType::I64), 1.0, false),
                    "scaled_causal_softmax: expected a floating-point tensor, got int64");
  CHECK_THROWS_WITH(scaled_causal_softmax_backward(Array::zeros({2, 3}), Array::zeros({3, 2}), 1.0, true),
                    "scaled_causal_softmax_backward: p (2,3) and grad (3,2) differ in shape");
  CHECK_THROWS_WITH(scaled_causal_softmax_backward(Array::zeros({2, 3}), Array::zeros({2, 3}, DType::F64), 1, true),
                    "scaled_causal_softmax_backward: expected operands of the same dtype, got float32 and float64");
}

TEST_CASE("scaled_causal_softmax_backward agrees with finite differences (float64)", "[ops][attention_softmax]") {
  Generator gen(43);
  for (bool causal : {true, false}) {
    Array x = Array::normal({2, 3, 5}, gen, 0, 2, DType::F64);
    Array g = Array::normal({2, 3, 5}, gen, 0, 1, DType::F64);
    const Array num = numeric_grad([&](const Array& v) { return dot(scaled_causal_softmax(v, 0.6, causal), g); }, x);
    CHECK(max_abs_diff(scaled_causal_softmax_backward(scaled_causal_softmax(x, 0.6, causal), g, 0.6, causal), num) <
          1e-8);
  }
}

TEST_CASE("layer_norm matches the reference on strided inputs, with and without weight/bias", "[ops]") {
  Generator gen(33);
  for (DType dt : {DType::F32, DType::F64}) {
    for (int trial = 0; trial < 40; ++trial) {
      const Shape shape = random_shape(gen, 4, 1, 7);
      const int64_t c = shape.back();
      const Layout layout = static_cast<Layout>(trial % static_cast<int>(Layout::Count));
      Array x = add(random_view(gen, shape, dt, layout, 2.0), Array::scalar(3.0, dt));
      Array w = trial % 4 == 0 ? Array() : random_view(gen, {c}, dt, trial % 2 ? Layout::Stepped : Layout::Contiguous);
      Array b = trial % 3 == 0 ? Array() : random_view(gen, {c}, dt, Layout::Stepped);
      const double eps = 1e-5;
      INFO(dtype_name(dt) << " " << layout_name(layout) << " " << shape_str(shape));
      const Ref rx = read(x);
      Shape rows = shape;
      rows.pop_back();
      Ref want(shape), wmean(rows), wrstd(rows);
      for_each_index(rows, [&](const Index& r) {
        Index i = r;
        i.push_back(0);
        double mu = 0, var = 0;
        for (int64_t k = 0; k < c; ++k) i.back() = k, mu += rx[i];
        mu /= c;
        for (int64_t k = 0; k < c; ++k) i.back() = k, var += (rx[i] - mu) * (rx[i] - mu);
        const double rstd = 1 / std::sqrt(var / c + eps);  // biased variance, as PyTorch
        wmean[r] = mu;
        wrstd[r] = rstd;
        for (int64_t k = 0; k < c; ++k) {
          i.back() = k;
          want[i] = (rx[i] - mu) * rstd * (w.defined() ? w.at({k}) : 1.0) + (b.defined() ? b.at({k}) : 0.0);
        }
      });
      const LayerNormOut out = layer_norm(x, w, b, eps);
      CHECK(ref_rel_diff(out.y, want) < 10 * tol(dt));
      CHECK(ref_rel_diff(out.mean, wmean) < tol(dt));
      CHECK(ref_rel_diff(out.rstd, wrstd) < 10 * tol(dt));
    }
  }
}

TEST_CASE("layer_norm of a constant row is exactly the bias, with no NaN", "[ops]") {
  for (DType dt : {DType::F32, DType::F64}) {
    Array x = Array::full({3, 8}, 0.1, dt);
    x.select(0, 1).fill_(-7.3);
    x.select(0, 2).fill_(1e6);
    Array w = Array::full({8}, 2.0, dt), b = Array::arange(8, dt);
    const LayerNormOut out = layer_norm(x, w, b, 1e-5);
    CHECK(all_finite(out.y));
    for (int64_t r = 0; r < 3; ++r) CHECK(max_abs_diff(out.y.select(0, r), b) == 0.0);
    CHECK(out.rstd.at({0}) == Approx(1 / std::sqrt(1e-5)).epsilon(1e-6));
    const LayerNormGrads g = layer_norm_backward(Array::ones({3, 8}, dt), x, out.mean, out.rstd, w, true);
    CHECK(all_finite(g.dx));
    CHECK(max_abs_diff(g.dx, Array::zeros({3, 8}, dt)) == 0.0);
  }
  CHECK_THROWS_WITH(layer_norm(Array::zeros({2, 3}), Array::ones({4}), Array(), 1e-5),
                    "layer_norm: expected weight of shape (3,) for x (2,3), got (4,)");
  CHECK_THROWS_WITH(layer_norm(Array::zeros({2, 3}), Array(), Array::ones({3}, DType::F64), 1e-5),
                    "layer_norm: bias is float64 but x is float32");
  CHECK_THROWS_WITH(layer_norm(Array::zeros({2, 0}), Array(), Array(), 1e-5), "layer_norm: the last dim of (2,0) is empty");
}

// Float rows that are contiguous take their own kernels (8 partial row sums, tensor/ops_nn.cpp); the strided cases
// above have rows of at most 7, which those kernels finish in their tail loop. Here rows of 64 (a model's width)
// and 67 (8 partial sums plus a tail), each float result against the float64 path (the strided loops) on the same
// values, forward and backward, with and without weight and bias; and once more with x and the gradient as
// transposed views, which keeps float on its strided loops too.
TEST_CASE("layer_norm and its backward: the float kernels for contiguous rows agree with float64", "[ops]") {
  Generator gen(35);
  for (int64_t c : {64, 67}) {
    for (int with = 0; with < 5; ++with) {
      const bool strided = with == 4;  // rows with stride 30: the general loops, in float as in float64
      const bool with_w = (with & 1) || strided, with_b = (with & 2) || strided;
      INFO("c " << c << ", weight " << with_w << ", bias " << with_b << (strided ? ", strided rows" : ""));
      Array x = strided ? add(Array::normal({c, 30}, gen), Array::scalar(2.0)).mT()
                        : add(Array::normal({6, 5, c}, gen), Array::scalar(2.0));
      Array g = strided ? Array::normal({c, 30}, gen).mT() : Array::normal({6, 5, c}, gen);
      Array w = with_w ? Array::normal({c}, gen, 1.0, 0.5) : Array();
      Array b = with_b ? Array::normal({c}, gen) : Array();
      auto d = [](const Array& a) { return a.defined() ? a.to(DType::F64) : Array(); };
      const LayerNormOut f = layer_norm(x, w, b, 1e-5), r = layer_norm(d(x), d(w), d(b), 1e-5);
      CHECK(allclose(f.y, r.y, 1e-5, 1e-5));
      CHECK(allclose(f.mean, r.mean, 1e-6, 1e-6));
      CHECK(allclose(f.rstd, r.rstd, 1e-6, 1e-6));
      const LayerNormGrads gf = layer_norm_backward(g, x, f.mean, f.rstd, w, with_b);
      const LayerNormGrads gr = layer_norm_backward(d(g), d(x), r.mean, r.rstd, d(w), with_b);
      CHECK(allclose(gf.dx, gr.dx, 1e-4, 1e-5));
      if (with_w) CHECK(allclose(gf.dweight, gr.dweight, 1e-4, 1e-4));
      if (with_b) CHECK(allclose(gf.dbias, gr.dbias, 1e-5, 1e-5));
    }
  }
}

// Contiguous float rows go through the kernel four at a time (layer_norm_rows4 in tensor/ops_nn.cpp), the rest of a
// run one at a time: every row must come out with the bits it gets alone (a one-row array takes the one-row
// kernel), whatever its place in the group. 11 rows: two groups of four and three single rows; a constant row and a
// row far from zero among them.
TEST_CASE("layer_norm and its backward: rows normalised side by side get the bits each gets alone", "[ops]") {
  Generator gen(36);
  for (int64_t c : {64, 67, 5}) {
    Array x = add(Array::normal({11, c}, gen, 0.0, 2.0), Array::scalar(1.5));
    x.select(0, 2).fill_(0.25);
    x.select(0, 5).copy_(add(x.select(0, 5), Array::scalar(1e4)));
    const Array w = Array::normal({c}, gen, 1.0, 0.3), b = Array::normal({c}, gen);
    const LayerNormOut all = layer_norm(x, w, b, 1e-5);
    for (int64_t r = 0; r < 11; ++r) {
      INFO("c " << c << ", row " << r);
      const LayerNormOut one = layer_norm(x.select(0, r).reshape({1, c}), w, b, 1e-5);
      CHECK(all.y.select(0, r).to_vector() == one.y.reshape({c}).to_vector());
      CHECK(all.mean.at({r}) == one.mean.at({0}));
      CHECK(all.rstd.at({r}) == one.rstd.at({0}));
    }
    // The backward, also four rows at a time (layer_norm_backward_rows4): each row's dx as alone, and dweight the
    // rows' g * xhat (a one-row dweight) summed in row order in double.
    const Array g = Array::normal({11, c}, gen);
    for (const Array& wt : {w, Array()}) {
      const LayerNormGrads grads = layer_norm_backward(g, x, all.mean, all.rstd, wt, true);
      std::vector<double> dw(size_t(c), 0.0);
      for (int64_t r = 0; r < 11; ++r) {
        INFO("backward, c " << c << ", row " << r << (wt.defined() ? "" : ", no weight"));
        const LayerNormGrads one = layer_norm_backward(g.select(0, r).reshape({1, c}), x.select(0, r).reshape({1, c}),
                                                       all.mean.narrow(0, r, 1), all.rstd.narrow(0, r, 1), wt, true);
        CHECK(grads.dx.select(0, r).to_vector() == one.dx.reshape({c}).to_vector());
        if (wt.defined())
          for (int64_t j = 0; j < c; ++j) dw[size_t(j)] += one.dweight.at({j});
      }
      if (wt.defined()) {
        std::vector<double> want;
        for (double v : dw) want.push_back(static_cast<float>(v));
        CHECK(grads.dweight.to_vector() == want);
      }
    }
  }
}

TEST_CASE("layer_norm_backward agrees with finite differences (float64) on strided inputs", "[ops]") {
  Generator gen(34);
  for (int trial = 0; trial < 8; ++trial) {
    const Shape shape = trial % 2 ? Shape{2, 3, 5} : Shape{5};
    const int64_t c = shape.back();
    Array x = random_view(gen, shape, DType::F64, static_cast<Layout>(trial % 5));
    const bool with_w = trial % 3 != 2, with_b = trial % 4 != 3;
    Array w = with_w ? Array::normal({c}, gen, 1.0, 0.5, DType::F64) : Array();
    Array b = with_b ? Array::normal({c}, gen, 0.0, 0.5, DType::F64) : Array();
    Array g = random_view(gen, shape, DType::F64, random_layout(gen));
    const double eps = 1e-5;
    auto loss_x = [&](const Array& v) { return dot(layer_norm(v, w, b, eps).y, g); };
    const LayerNormOut out = layer_norm(x, w, b, eps);
    const LayerNormGrads got = layer_norm_backward(g, x, out.mean, out.rstd, w, with_b);
    INFO("trial " << trial);
    CHECK(max_abs_diff(got.dx, numeric_grad(loss_x, x)) < 1e-7);
    CHECK(got.dweight.defined() == with_w);
    CHECK(got.dbias.defined() == with_b);
    if (with_w) {
      auto loss_w = [&](const Array& v) { return dot(layer_norm(x, v, b, eps).y, g); };
      CHECK(got.dweight.shape() == Shape{c});
      CHECK(max_abs_diff(got.dweight, numeric_grad(loss_w, w)) < 1e-7);
    }
    if (with_b) {
      CHECK(got.dbias.shape() == Shape{c});
      // d/dbias = sum of grad over rows
      CHECK(max_abs_diff(got.dbias, shape.size() == 1 ? g : sum(g, {0, 1})) < 1e-12);
    }
  }
}

TEST_CASE("cross_entropy matches log-softmax + NLL, with ignore_index and strided logits", "[ops]") {
  Generator gen(35);
  for (DType dt : {DType::F32, DType::F64}) {
    for (int trial = 0; trial < 30; ++trial) {
      const int64_t n = gen.randint(1, 9), c = gen.randint(1, 12);
      const Layout layout = static_cast<Layout>(trial % static_cast<int>(Layout::Count));
      Array logits = random_view(gen, {n, c}, dt, layout, 3.0);
      std::vector<int64_t> t(n);
      for (auto& v : t) v = gen.uniform() < 0.25 ? -100 : gen.randint(0, c);
      Array targets = Array::from_vector(t, {n});
      if (trial % 2) targets = Array::from_vector(std::vector<int64_t>(2 * n, 0), {2 * n}).slice(0, 0, 2 * n, 2),
                     targets.copy_(Array::from_vector(t, {n}));  // strided targets
      const Ref rl = read(logits);
      double total = 0;
      int64_t count = 0;
      std::vector<double> lse(n);
      for (int64_t i = 0; i < n; ++i) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < c; ++j) m = std::max(m, rl[{i, j}]);
        for (int64_t j = 0; j < c; ++j) s += std::exp(rl[{i, j}] - m);
        lse[i] = m + std::log(s);
        if (t[i] != -100) total += lse[i] - rl[{i, t[i]}], count++;
      }
      INFO(dtype_name(dt) << " " << layout_name(layout) << " n " << n << " c " << c);
      const CrossEntropyOut out = cross_entropy(logits, targets);
      CHECK(out.count == count);
      CHECK(out.loss.ndim() == 0);
      CHECK(out.loss.dtype() == dt);
      CHECK(out.loss.item() == Approx(count ? total / count : 0.0).epsilon(tol(dt)).margin(tol(dt)));
      Ref wl({n});
      wl.v = lse;
      CHECK(ref_rel_diff(out.lse, wl) < tol(dt));
      // backward: (softmax - onehot) * grad / count on counted rows, 0 on ignored rows
      const double gscale = 0.7;
      Ref want({n, c});
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < c; ++j)
          want[{i, j}] = t[i] == -100 || count == 0
                             ? 0.0
                             : (std::exp(rl[{i, j}] - lse[i]) - (j == t[i])) * gscale / count;
      CHECK(ref_rel_diff(cross_entropy_backward(logits, targets, out.lse, out.count, gscale), want) < tol(dt));
    }
  }
}

TEST_CASE("cross_entropy backward agrees with finite differences; big logits stay finite", "[ops]") {
  Generator gen(36);
  Array logits = Array::normal({4, 6}, gen, 0, 2, DType::F64);
  Array targets = Array::from_vector(std::vector<int64_t>{2, 5, 7, 0}, {4});  // 7 is the ignore_index here
  auto loss = [&](const Array& v) { return cross_entropy(v, targets, 7).loss.item(); };
  const CrossEntropyOut out = cross_entropy(logits, targets, 7);
  CHECK(out.count == 3);
  CHECK(max_abs_diff(cross_entropy_backward(logits, targets, out.lse, out.count, 1.0, 7), numeric_grad(loss, logits)) <
        1e-8);
  // logits of +-1e4 do not overflow
  for (DType dt : {DType::F32, DType::F64}) {
    Array big = Array::from_vector(std::vector<double>{1e4, -1e4, 0, -1e4, 1e4, 1e4}, {2, 3}).to(dt);
    Array tg = Array::from_vector(std::vector<int64_t>{0, 1}, {2});
    const CrossEntropyOut o = cross_entropy(big, tg);
    CHECK(o.loss.item() == Approx(std::log(2.0) / 2));
    CHECK(all_finite(o.lse));
    CHECK(all_finite(cross_entropy_backward(big, tg, o.lse, o.count, 1.0)));
  }
}

// A NaN logit makes its row's log-sum-exp NaN: the row's first NaN itself, sign included, on dense rows (whose
// maximum is vectorised) as on strided ones; the other rows are untouched.
TEST_CASE("cross_entropy: a NaN logit gives its row the first NaN as log-sum-exp", "[ops]") {
  Generator gen(37);
  const float neg_nan = -std::numeric_limits<float>::quiet_NaN();
  Array dense = Array::normal({3, 70}, gen);
  dense.set({1, 40}, double(neg_nan));
  dense.set({1, 50}, double(std::numeric_limits<float>::quiet_NaN()));
  const Array targets = Array::from_vector(std::vector<int64_t>{0, 1, 2}, {3});
  for (const Array& logits : {dense, dense.mT().contiguous().mT()}) {  // dense rows, and a strided view
    INFO((logits.is_contiguous() ? "dense" : "strided"));
    const CrossEntropyOut out = cross_entropy(logits, targets, -100);
    const float l1 = float(out.lse.at({1}));
    CHECK(std::isnan(l1));
    CHECK(std::signbit(l1));  // -NaN, the first one, not a NaN of the kernel's own
    CHECK(std::isfinite(out.lse.at({0})));
    CHECK(std::isfinite(out.lse.at({2})));
  }
}

TEST_CASE("cross_entropy: all rows ignored gives loss 0 and count 0; bad targets are errors", "[ops]") {
  Array logits = Array::ones({3, 4});
  Array ign = Array::full({3}, -100, DType::I64);
  const CrossEntropyOut out = cross_entropy(logits, ign);
  CHECK(out.count == 0);
  CHECK(out.loss.item() == 0.0);
  const Array g = cross_entropy_backward(logits, ign, out.lse, out.count, 1.0);
  CHECK(all_finite(g));
  CHECK(max_abs_diff(g, Array::zeros({3, 4})) == 0.0);
  const CrossEntropyOut empty = cross_entropy(Array::zeros({0, 4}), Array::zeros({0}, DType::I64));
  CHECK(empty.count == 0);
  CHECK(empty.loss.item() == 0.0);
  CHECK_THROWS_WITH(cross_entropy(logits, Array::from_vector(std::vector<int64_t>{0, 4, 1}, {3})),
                    "cross_entropy: target 4 at row 1 is out of range for 4 classes");
  CHECK_THROWS_WITH(cross_entropy(logits, Array::from_vector(std::vector<int64_t>{0, 1, -1}, {3})),
                    "cross_entropy: target -1 at row 2 is out of range for 4 classes");
  CHECK_THROWS_WITH(cross_entropy(logits, Array::zeros({3})), "cross_entropy: expected int64 targets, got float32");
  CHECK_THROWS_WITH(cross_entropy(logits, Array::zeros({2}, DType::I64)),
                    "cross_entropy: expected targets of shape (3,) for logits (3,4), got (2,)");
  CHECK_THROWS_WITH(cross_entropy(Array::ones({3}), Array::zeros({3}, DType::I64)),
                    "cross_entropy: expected logits of shape (N,C), got (3,)");
}

TEST_CASE("row kernels give the same results on 1 and 2 threads (parallel rows)", "[ops]") {
  const int saved = num_threads();
  Generator gen(37);
  Array x = Array::normal({40, 300, 64}, gen).permute({1, 0, 2});  // (300,40,64), strided rows
  Array t = Array::zeros({12000}, DType::I64);
  std::vector<Array> r1, r2;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    auto& r = threads == 1 ? r1 : r2;
    r.push_back(softmax(x, -1));
    r.push_back(log_softmax(x, 1));
    r.push_back(layer_norm(x, Array(), Array(), 1e-5).y);
    r.push_back(max(x, 0));
    r.push_back(cross_entropy(x.reshape({12000, 64}), t).lse);
    const Array scores = x.reshape({300, 40, 8, 8}).narrow(2, 0, 7);  // (300,40,7,8): T = 7 queries, S = 8 keys
    const Array p = scaled_causal_softmax(scores, 0.3, true);
    r.push_back(p);
    r.push_back(scaled_causal_softmax_backward(p, x.reshape({300, 40, 8, 8}).narrow(2, 1, 7), 0.3, true));
  }
  set_num_threads(saved);
  for (size_t i = 0; i < r1.size(); ++i) CHECK(max_abs_diff(r1[i], r2[i]) == 0.0);
  // and the parallel result is right
  const Ref want = ref_softmax(read(x.slice(0, 0, 3)), 2, false);
  CHECK(ref_rel_diff(r2[0].slice(0, 0, 3), want) < 1e-6);
}
