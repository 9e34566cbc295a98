// matmul against a naive triple loop: odd sizes, 1-D operands, batch broadcasting, transposed and strided views.
#include "tests/tensor/test_ops_util.h"
#include "tests/test_util.h"

using namespace qkvlab;
using namespace qkvlab::testing;

namespace {

// NumPy matmul semantics, written out with multi-indices, in double.
Ref ref_matmul(const Array& a, const Array& b) {
  const bool av = a.ndim() == 1, bv = b.ndim() == 1;
  const Array a2 = av ? a.unsqueeze(0) : a, b2 = bv ? b.unsqueeze(1) : b;
  const int64_t M = a2.size(-2), K = a2.size(-1), N = b2.size(-1);
  const Shape ab(a2.shape().begin(), a2.shape().end() - 2), bb(b2.shape().begin(), b2.shape().end() - 2);
  const Shape batch = broadcast_shapes(ab, bb, "ref");
  Shape full = batch;
  full.push_back(M);
  full.push_back(N);
  Ref out(full);
  const Ref ra = read(a2), rb = read(b2);
  for_each_index(full, [&](const Index& i) {
    Index ia(ab.size() + 2), ib(bb.size() + 2);
    for (size_t d = 0; d < ab.size(); ++d) ia[d] = ab[d] == 1 ? 0 : i[batch.size() - ab.size() + d];
    for (size_t d = 0; d < bb.size(); ++d) ib[d] = bb[d] == 1 ? 0 : i[batch.size() - bb.size() + d];
    double s = 0;
    for (int64_t k = 0; k < K; ++k) {
      ia[ab.size()] = i[batch.size()];
      ia[ab.size() + 1] = k;
      ib[bb.size()] = k;
      ib[bb.size() + 1] = i[batch.size() + 1];
      s += ra[ia] * rb[ib];
    }
    out[i] = s;
  });
  Shape os = batch;
  if (!av) os.push_back(M);
  if (!bv) os.push_back(N);
  out.shape = os;
  return out;
}

}  // namespace

TEST_CASE("matmul matches a naive loop: odd sizes, batch broadcast, every layout", "[ops]") {
  Generator gen(51);
  for (DType dt : {DType::F32, DType::F64}) {
    for (int trial = 0; trial < 80; ++trial) {
      const int64_t M = gen.randint(1, trial % 8 == 0 ? 70 : 9), K = gen.randint(0, trial % 8 == 0 ? 70 : 9),
                    N = gen.randint(1, trial % 8 == 0 ? 70 : 9);
      Shape batch(static_cast<size_t>(gen.randint(0, 3)));
      for (auto& d : batch) d = gen.randint(1, 4);
      Shape sa = broadcastable_to(gen, batch), sb = broadcastable_to(gen, batch);
      if (trial % 5 == 0) sa = {};  // matrix @ batched
      sa.insert(sa.end(), {M, K});
      sb.insert(sb.end(), {K, N});
      Array a = random_view(gen, sa, dt, static_cast<Layout>(trial % static_cast<int>(Layout::Count)));
      Array b = random_view(gen, sb, dt, random_layout(gen));
      if (trial % 3 == 0) {  // b as a transposed view of a (..., N, K) array
        Shape t(sb.begin(), sb.end() - 2);
        t.insert(t.end(), {N, K});
        b = random_view(gen, t, dt, random_layout(gen)).mT();
      }
      INFO(dtype_name(dt) << " " << shape_str(a.shape()) << " strides " << shape_str(a.strides()) << " @ "
                          << shape_str(b.shape()) << " strides " << shape_str(b.strides()));
      const Array got = matmul(a, b);
      CHECK(got.is_contiguous());
      CHECK(got.dtype() == dt);
      CHECK(ref_rel_diff(got, ref_matmul(a, b)) < (dt == DType::F32 ? 1e-5 : 1e-12) * std::max<int64_t>(K, 1));
    }
  }
}

TEST_CASE("matmul with 1-D operands follows NumPy", "[ops]") {
  Generator gen(52);
  for (DType dt : {DType::F32, DType::F64}) {
    Array v = Array::normal({5}, gen, 0, 1, dt), w = Array::normal({5}, gen, 0, 1, dt);
    Array m = Array::normal({5, 3}, gen, 0, 1, dt), mt = Array::normal({3, 5}, gen, 0, 1, dt);
    Array bm = Array::normal({2, 4, 5, 3}, gen, 0, 1, dt);
    CHECK(matmul(v, w).shape() == Shape{});
    CHECK(matmul(v, m).shape() == Shape{3});
    CHECK(matmul(mt, v).shape() == Shape{3});
    CHECK(matmul(v, bm).shape() == Shape{2, 4, 3});
    CHECK(matmul(bm.mT(), v).shape() == Shape{2, 4, 3});
    for (auto [a, b] : std::vector<std::pair<Array, Array>>{
             {v, w}, {v, m}, {mt, v}, {v, bm}, {bm.mT(), v}, {v.slice(0, 0, 5, 2), m.slice(0, 0, 5, 2)}}) {
      INFO(shape_str(a.shape()) << " @ " << shape_str(b.shape()));
      CHECK(ref_rel_diff(matmul(a, b), ref_matmul(a, b)) < tol(dt) * 10);
    }
    // stride-0 vector (an expanded scalar)
    Array e = Array::scalar(2.0, dt).expand({5});
    CHECK(ref_rel_diff(matmul(e, m), ref_matmul(e, m)) < tol(dt) * 10);
  }
}

TEST_CASE("matmul: empty dims, K = 0, errors", "[ops]") {
  CHECK(matmul(Array::ones({0, 3}), Array::ones({3, 4})).shape() == Shape{0, 4});
  CHECK(matmul(Array::ones({2, 0, 3}), Array::ones({3, 4})).shape() == Shape{2, 0, 4});
  CHECK(matmul(Array::ones({0, 2, 3}), Array::ones({3, 4})).shape() == Shape{0, 2, 4});
  const Array z = matmul(Array::ones({2, 0}), Array::ones({0, 3}));
  CHECK(max_abs_diff(z, Array::zeros({2, 3})) == 0.0);  // K = 0: zeros, not garbage
  CHECK_THROWS_WITH(matmul(Array::ones({4, 3}), Array::ones({5, 2})), "matmul: inner dims differ: (4,3) @ (5,2)");
  CHECK_THROWS_WITH(matmul(Array::ones({3}), Array::ones({4})), "matmul: inner dims differ: (3,) @ (4,)");
  CHECK_THROWS_WITH(matmul(Array::ones({2, 4, 3}), Array::ones({3, 3, 2})),
                    "matmul: batch dims do not broadcast: (2,4,3) @ (3,3,2)");
  CHECK_THROWS_WITH(matmul(Array::scalar(1.0), Array::ones({3})),
                    "matmul: both operands need at least 1 dim, got () @ (3,)");
  CHECK_THROWS_WITH(matmul(Array::ones({2, 2}), Array::ones({2, 2}, DType::F64)),
                    "matmul: expected operands of the same dtype, got float32 and float64");
  CHECK_THROWS_WITH(matmul(Array::ones({2}, DType::I64), Array::ones({2}, DType::I64)),
                    "matmul: expected a floating-point tensor, got int64");
}

TEST_CASE("matmul of transposed views equals matmul of their copies (attention shapes)", "[ops]") {
  Generator gen(53);
  // q (B,H,T,D) @ k^T (B,H,D,T) with k a permuted view of a (B,T,H,D) projection, and GQA-style broadcast
  Array qkv = Array::normal({2, 17, 4, 8}, gen);   // (B,T,H,D)
  Array q = qkv.permute({0, 2, 1, 3});              // (B,H,T,D)
  Array k = Array::normal({2, 17, 1, 8}, gen).permute({0, 2, 3, 1});  // (B,1,D,T): one KV head shared by 4
  const Array s = matmul(q, k);                     // (B,H,T,T)
  CHECK(s.shape() == Shape{2, 4, 17, 17});
  CHECK(max_abs_diff(s, matmul(q.contiguous(), k.contiguous())) < 1e-5);
  CHECK(ref_rel_diff(s, ref_matmul(q, k)) < 1e-5);
}

// matmul_into writes a product into a block of a bigger array (the attention core's causal blocks,
// nn/attention/sdpa.cpp): the block gets matmul's bits, broadcast batch dims included, and nothing outside it
// changes; an output of the wrong shape or with strided rows is refused.
TEST_CASE("matmul_into: a product into a block of a bigger array, matmul's bits", "[ops][matmul]") {
  Generator gen(71);
  const Array a = Array::normal({2, 3, 20, 9}, gen), b = Array::normal({2, 1, 9, 40}, gen);
  Array big = Array::full({2, 3, 50, 60}, 7.0);
  Array block = big.slice(-2, 5, 25).slice(-1, 10, 50);  // (2,3,20,40), rows of stride 60
  matmul_into(block, a, b);
  CHECK(block.to_vector() == matmul(a, b).to_vector());
  // a product over part of the inner dim, as the causal blocks take it
  Array part = big.slice(-2, 30, 50).slice(-1, 0, 7);
  matmul_into(part, a.slice(-1, 0, 4), b.slice(-2, 0, 4).slice(-1, 0, 7));
  CHECK(part.to_vector() == matmul(a.slice(-1, 0, 4), b.slice(-2, 0, 4).slice(-1, 0, 7)).to_vector());
  // everything outside the two blocks is still 7
  Array mask = Array::ones({2, 3, 50, 60});
  mask.slice(-2, 5, 25).slice(-1, 10, 50).fill_(0.0);
  mask.slice(-2, 30, 50).slice(-1, 0, 7).fill_(0.0);
  CHECK(sum(mul(mask, sub(big, Array::scalar(7.0)))).item() == 0.0);
  CHECK(sum(mask).item() == 2 * 3 * (50 * 60 - 20 * 40 - 20 * 7));
  Array wrong = Array::empty({2, 3, 20, 41});
  CHECK_THROWS_WITH(matmul_into(wrong, a, b), Catch::Contains("is not the product's (2,3,20,40)"));
  Array strided = Array::empty({2, 3, 40, 20}).mT();
  CHECK_THROWS_WITH(matmul_into(strided, a, b), Catch::Contains("rows must be dense"));
}

// matmul_scaled multiplies by the scale where the GEMM stores the product (GeluLinearBackward's dh): the bits of
// matmul then mul, on every path of the GEMM -- full and edge tiles, K over one block (the scale must wait for the
// last pass), one row, K = 0, transposed and strided operands, one and two threads, float and double.
TEST_CASE("matmul_scaled: (a @ b) * scale in the GEMM's store, matmul then mul's bits", "[ops][matmul]") {
  Generator g(83);
  struct Case { int64_t M, N, K; };
  for (DType dt : {DType::F32, DType::F64})
    for (int threads : {1, 2}) {
      testing::ThreadCount tc(threads);
      for (const Case& c : std::vector<Case>{{2048, 64, 256}, {2048, 256, 64}, {37, 50, 19}, {15, 33, 600},
                                              {1, 70, 90}, {1, 5, 300}, {9, 7, 0}, {300, 16, 16}}) {
        INFO(dtype_name(dt) << " " << threads << " thread(s), M " << c.M << " N " << c.N << " K " << c.K);
        const Array a = Array::normal({c.M, c.K}, g).to(dt), b = Array::normal({c.K, c.N}, g).to(dt);
        const Array s = Array::normal({c.M, c.N}, g).to(dt);
        CHECK(matmul_scaled(a, b, s).to_vector() == mul(matmul(a, b), s).to_vector());
      }
      // transposed operands and a scale that is a block of a bigger array (rows of stride 40)
      const Array at = Array::normal({30, 45}, g).to(dt).mT(), bt = Array::normal({21, 30}, g).to(dt).mT();
      const Array big = Array::normal({60, 40}, g).to(dt), s = big.slice(0, 5, 50).slice(1, 3, 24);
      CHECK(matmul_scaled(at, bt, s).to_vector() == mul(matmul(at, bt), s).to_vector());
    }
  const Array a = Array::normal({4, 3}, g), b = Array::normal({3, 5}, g);
  CHECK_THROWS_WITH(matmul_scaled(a, b, Array::ones({4, 6})),
                    Catch::Contains("the scale (4,6) is not the product's (4,5)"));
  CHECK_THROWS_WITH(matmul_scaled(a, b, Array::ones({5, 4}).mT()), Catch::Contains("rows must be dense"));
  CHECK_THROWS_WITH(matmul_scaled(a, Array::normal({4, 5}, g), Array::ones({4, 5})),
                    Catch::Contains("inner dims differ"));
  CHECK_THROWS_WITH(matmul_scaled(a.unsqueeze(0), b, Array::ones({4, 5})), Catch::Contains("expected two matrices"));
}

// linear_backward runs float rows in blocks of 256, each thread taking its share of every block (tensor/ops_matmul.cpp):
// every gradient must be the bits of the three ops it stands for, on 1, 2 and 3 threads: rows from one block and
// a rest (512, 700, 1000) to 2048, 769 (whose last block must not be a single row), dx's K over one GEMM block
// (out 300), columns off the vector width (70), a transposed weight, with and without a scale, any subset.
TEST_CASE("linear_backward: blocks of rows give the bits of matmul, matmul_scaled and sum", "[ops][matmul]") {
  Generator gen(85);
  struct Case { int64_t rows, in, out; };
  for (const Case& c : std::vector<Case>{{512, 64, 64}, {700, 64, 256}, {769, 64, 64}, {1000, 70, 300}, {2048, 256, 64},
                                          {100, 8, 8}}) {
    const Array g = Array::normal({c.rows, c.out}, gen), x = Array::normal({c.rows, c.in}, gen);
    const Array w = Array::normal({c.out, c.in}, gen), wt = Array::normal({c.in, c.out}, gen).mT();
    const Array s = Array::normal({c.rows, c.in}, gen);
    for (int threads : {1, 2, 3}) {
      testing::ThreadCount tc(threads);
      for (const Array& wu : {w, wt})
        for (const Array& sc : {Array(), s}) {
          INFO("rows " << c.rows << " in " << c.in << " out " << c.out << ", " << threads << " thread(s)"
                       << (wu.is_contiguous() ? "" : ", transposed w") << (sc.defined() ? ", scaled" : ""));
          const LinearGrads d = linear_backward(g, x, wu, sc, true, true, true);
          CHECK(d.dx.to_vector() == (sc.defined() ? mul(matmul(g, wu), sc) : matmul(g, wu)).to_vector());
          CHECK(d.dw.to_vector() == matmul(g.mT(), x).to_vector());
          CHECK(d.db.to_vector() == sum(g, {0}).to_vector());
        }
      // one gradient alone, the operands it does not need left undefined
      const LinearGrads only_dx = linear_backward(g, Array(), w, Array(), true, false, false);
      CHECK(only_dx.dx.to_vector() == matmul(g, w).to_vector());
      CHECK((!only_dx.dw.defined() && !only_dx.db.defined()));
      const LinearGrads only_dw = linear_backward(g, x, Array(), Array(), false, true, false);
      CHECK(only_dw.dw.to_vector() == matmul(g.mT(), x).to_vector());
      CHECK(linear_backward(g, Array(), Array(), Array(), false, false, true).db.to_vector() ==
            sum(g, {0}).to_vector());
    }
  }
  const Array g = Array::zeros({4, 3}), x = Array::zeros({4, 5}), w = Array::zeros({3, 5});
  CHECK_THROWS_WITH(linear_backward(g, Array::zeros({6, 5}), w, Array(), true, true, true),
                    "linear_backward: g (4,3) and x (6,5) do not have the same rows");
  CHECK_THROWS_WITH(linear_backward(g, x, Array::zeros({2, 5}), Array(), true, true, true),
                    "linear_backward: w (2,5) is not (out, in) for g (4,3)");
  CHECK_THROWS_WITH(linear_backward(g, x, Array::zeros({3, 4}), Array(), true, true, true),
                    "linear_backward: x (4,5) and w (3,4) differ in inputs");
  CHECK_THROWS_WITH(linear_backward(g, x, w, Array::zeros({4, 4}), true, true, true),
                    "linear_backward: the scale (4,4) is not dx's (4,5)");
  CHECK_THROWS_WITH(linear_backward(g, Array(), w, Array(), true, true, true), Catch::Contains("linear_backward"));
}

TEST_CASE("linear: x @ w^T + b in one pass equals matmul then add", "[ops][matmul]") {
  Generator g(21);
  for (DType dt : {DType::F32, DType::F64}) {
    for (const Shape& xs : std::vector<Shape>{{7, 5}, {2, 3, 5}, {1, 5}, {0, 5}, {4, 1, 5}}) {
      const Array x = Array::normal(xs, g).to(dt), w = Array::normal({6, 5}, g).to(dt), b = Array::normal({6}, g).to(dt);
      const Array ref = add(matmul(x, w.mT()), b), got = linear(x, w, b);
      REQUIRE(got.shape() == ref.shape());
      const auto r = ref.to_vector(), o = got.to_vector();
      for (size_t i = 0; i < r.size(); ++i) CHECK(o[i] == Approx(r[i]).margin(1e-5));
      const auto nb = linear(x, w, Array()).to_vector(), mm = matmul(x, w.mT()).to_vector();  // no bias
      for (size_t i = 0; i < mm.size(); ++i) CHECK(nb[i] == mm[i]);
    }
  }
  // Strided operands are read as they are: a transposed input and a transposed weight.
  const Array xt = Array::normal({5, 4}, g).mT(), wt = Array::normal({5, 3}, g).mT(), b = Array::normal({3}, g);
  const auto r = add(matmul(xt, wt.mT()), b).to_vector(), o = linear(xt, wt, b).to_vector();
  for (size_t i = 0; i < r.size(); ++i) CHECK(o[i] == Approx(r[i]).margin(1e-5));
  // Deeper than one block of the GEMM (K > 256): the bias joins the first partial sum instead of the total, so
  // the results agree up to rounding.
  for (DType dt : {DType::F32, DType::F64}) {
    const Array x = Array::normal({9, 600}, g).to(dt), w = Array::normal({7, 600}, g).to(dt),
                bb = Array::normal({7}, g).to(dt);
    const auto rr = add(matmul(x, w.mT()), bb).to_vector(), oo = linear(x, w, bb).to_vector();
    for (size_t i = 0; i < rr.size(); ++i) CHECK(oo[i] == Approx(rr[i]).epsilon(1e-4).margin(1e-4));
  }
  // A weight with no inputs: the product is empty and every row is the bias.
  const auto only_bias = linear(Array::zeros({2, 0}), Array::zeros({3, 0}), Array::full({3}, 1.5)).to_vector();
  for (double v : only_bias) CHECK(v == 1.5);
}

TEST_CASE("linear: bad shapes and dtypes say what was expected", "[ops][matmul]") {
  const Array x = Array::zeros({4, 3}), w = Array::zeros({2, 5}), b = Array::zeros({2});
  CHECK_THROWS_WITH(linear(x, w, b), "linear: input (4,3) does not end in the weight's 5 inputs (weight (2,5))");
  CHECK_THROWS_WITH(linear(x, Array::zeros({2, 3}), Array::zeros({3})),
                    "linear: bias (3,) for 2 outputs (weight (2,3))");
  CHECK_THROWS_WITH(linear(x, Array::zeros({3}), b), "linear: the weight must be (out, in), got (3,)");
  CHECK_THROWS_WITH(linear(x, Array::zeros({2, 3}, DType::F64), b), Catch::Contains("linear"));
}
