// embedding / embedding_backward_, index_select, concat and dropout_mask against reference loops.
#include "tests/tensor/test_ops_util.h"

#include "tensor/parallel.h"

using namespace qkvlab;
using namespace qkvlab::testing;

TEST_CASE("embedding gathers rows for ids of any shape, from a strided table", "[ops]") {
  Generator gen(41);
  for (DType dt : {DType::F32, DType::F64}) {
    for (int trial = 0; trial < 20; ++trial) {
      const int64_t v = gen.randint(1, 12), c = gen.randint(1, 9);
      Layout lay = static_cast<Layout>(trial % static_cast<int>(Layout::Count));
      Array w = random_view(gen, {v, c}, dt, lay);
      const Shape ids_shape = random_shape(gen, 3, 0, 4);
      Array ids = Array::zeros(ids_shape, DType::I64);
      for_each_index(ids_shape, [&](const Index& i) { ids.set(i, double(gen.randint(0, v))); });
      if (trial % 2 && ids.ndim() >= 2) ids = ids.mT().contiguous().mT();  // strided ids
      Shape out_shape = ids_shape;
      out_shape.push_back(c);
      Ref want(out_shape);
      for_each_index(out_shape, [&](const Index& i) {
        Index id(i.begin(), i.end() - 1);
        want[i] = w.at({int64_t(ids.at(id)), i.back()});
      });
      INFO(layout_name(lay) << " ids " << shape_str(ids_shape));
      const Array got = embedding(w, ids);
      CHECK(got.shape() == out_shape);
      CHECK(ref_diff(got, want) == 0.0);
    }
  }
  Array w = Array::zeros({65, 4});
  Array ids = Array::from_vector(std::vector<int64_t>{1, 2, 3, 70}, {2, 2});
  CHECK_THROWS_WITH(embedding(w, ids), "embedding: id 70 at position 3 is out of range for 65 rows");
  CHECK_THROWS_WITH(embedding(w, Array::from_vector(std::vector<int64_t>{-1}, {1})),
                    "embedding: id -1 at position 0 is out of range for 65 rows");
  CHECK_THROWS_WITH(embedding(w, Array::zeros({2})), "embedding: expected int64 ids, got float32");
  CHECK_THROWS_WITH(embedding(Array::zeros({4}), ids), "embedding: expected weight of shape (V,C), got (4,)");
  CHECK(embedding(w, Array::zeros({0}, DType::I64)).shape() == Shape{0, 4});
}

TEST_CASE("embedding_backward_ scatter-adds, correct when ids repeat, into a strided dweight", "[ops]") {
  Generator gen(42);
  const int saved = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (DType dt : {DType::F32, DType::F64}) {
      for (int trial = 0; trial < 12; ++trial) {
        // big enough on some trials to take the column-parallel path
        const int64_t v = gen.randint(1, 6), c = trial % 3 == 0 ? 256 : gen.randint(1, 9);
        const Shape ids_shape = trial % 3 == 0 ? Shape{40, 13} : random_shape(gen, 3, 1, 5);
        Array ids = Array::zeros(ids_shape, DType::I64);
        for_each_index(ids_shape, [&](const Index& i) { ids.set(i, double(gen.randint(0, v))); });  // many repeats
        Shape gshape = ids_shape;
        gshape.push_back(c);
        Array grad = random_view(gen, gshape, dt, random_layout(gen));
        Array dw = random_view(gen, {v, c}, dt, trial % 2 ? Layout::Permuted : Layout::Stepped);
        Ref want = read(dw);
        for_each_index(gshape, [&](const Index& i) {
          Index id(i.begin(), i.end() - 1);
          want[{int64_t(ids.at(id)), i.back()}] += grad.at(i);
        });
        embedding_backward_(dw, ids, grad);
        INFO("threads " << threads << " trial " << trial);
        CHECK(ref_rel_diff(dw, want) < tol(dt));
      }
    }
  }
  set_num_threads(saved);
  Array dw = Array::zeros({5, 3});
  CHECK_THROWS_WITH(embedding_backward_(dw, Array::zeros({2}, DType::I64), Array::zeros({2, 4})),
                    "embedding_backward_: expected grad of shape (2,3) for ids (2,) and dweight (5,3), got (2,4)");
  CHECK_THROWS_WITH(embedding_backward_(dw, Array::full({1}, 5, DType::I64), Array::zeros({1, 3})),
                    "embedding_backward_: id 5 at position 0 is out of range for 5 rows");
  Array ex = Array::zeros({1, 3}).expand({5, 3});
  CHECK_THROWS_WITH(embedding_backward_(ex, Array::zeros({1}, DType::I64), Array::zeros({1, 3})),
                    "embedding_backward_: dweight (5,3) is an expanded view (stride 0 on dim 0)");
}

TEST_CASE("index_select along any dim, any layout and dtype", "[ops]") {
  Generator gen(43);
  for (DType dt : {DType::F32, DType::F64, DType::I64}) {
    for (int trial = 0; trial < 20; ++trial) {
      const Shape shape = random_shape(gen);
      const int64_t nd = static_cast<int64_t>(shape.size());
      Array a;
      if (dt != DType::I64) {
        a = random_view(gen, shape, dt, random_layout(gen));
      } else {  // int64 works too (index kernels accept it): a column-major copy of 0..n-1
        a = Array::arange(shape_numel(shape), DType::I64).reshape(shape);
        if (nd >= 2) a = a.mT().contiguous().mT();
      }
      const int64_t dim = gen.randint(-nd, nd), d = dim < 0 ? dim + nd : dim;
      std::vector<int64_t> idx(static_cast<size_t>(gen.randint(0, 6)));
      for (auto& i : idx) i = gen.randint(0, shape[d]);
      Shape os = shape;
      os[d] = static_cast<int64_t>(idx.size());
      Ref want(os);
      for_each_index(os, [&](const Index& i) {
        Index j = i;
        j[d] = idx[i[d]];
        want[i] = a.at(j);
      });
      const Array got = index_select(a, dim, Array::from_vector(idx, {int64_t(idx.size())}));
      CHECK(got.dtype() == a.dtype());
      CHECK(ref_diff(got, want) == 0.0);
    }
  }
  CHECK_THROWS_WITH(index_select(Array::zeros({3, 2}), 0, Array::from_vector(std::vector<int64_t>{0, 3}, {2})),
                    "index_select: id 3 at position 1 is out of range for 3 rows");
  CHECK_THROWS_WITH(index_select(Array::zeros({3, 2}), 0, Array::zeros({1, 1}, DType::I64)),
                    "index_select: expected a 1-D index, got shape (1,1)");
}

TEST_CASE("concat along any dim, with strided parts", "[ops]") {
  Generator gen(44);
  for (DType dt : {DType::F32, DType::F64}) {
    for (int trial = 0; trial < 20; ++trial) {
      const Shape shape = random_shape(gen);
      const int64_t nd = static_cast<int64_t>(shape.size());
      const int64_t dim = gen.randint(-nd, nd), d = dim < 0 ? dim + nd : dim;
      std::vector<Array> parts;
      const int64_t np = gen.randint(1, 4);
      for (int64_t p = 0; p < np; ++p) {
        Shape s = shape;
        s[d] = gen.randint(0, 4);
        parts.push_back(random_view(gen, s, dt, random_layout(gen)));
      }
      const Array got = concat(parts, dim);
      Shape os = shape;
      os[d] = 0;
      for (auto& p : parts) os[d] += p.shape()[d];
      REQUIRE(got.shape() == os);
      Ref want(os);
      int64_t at = 0;
      for (auto& p : parts) {
        for_each_index(p.shape(), [&](const Index& i) {
          Index j = i;
          j[d] += at;
          want[j] = p.at(i);
        });
        at += p.shape()[d];
      }
      CHECK(ref_diff(got, want) == 0.0);
    }
  }
  CHECK_THROWS_WITH(concat({Array::zeros({2, 3}), Array::zeros({3, 3})}, 1),
                    "concat: shapes (2,3) and (3,3) (parts 0 and 1) differ outside dim 1");
  CHECK_THROWS_WITH(concat({Array::zeros({2, 3}), Array::zeros({2, 3, 1})}, 0),
                    "concat: shapes (2,3) and (2,3,1) (parts 0 and 1) differ outside dim 0");
  CHECK_THROWS_WITH(concat({Array::zeros({2}), Array::zeros({2}, DType::F64)}, 0),
                    "concat: part 1 is float64 but part 0 is float32");
  CHECK_THROWS_WITH(concat({}, 0), "concat: expected at least one array, got none");
  CHECK_THROWS_WITH(concat({Array::zeros({2})}, 1), "concat: dim 1 is out of range for a tensor with 1 dims");
}

TEST_CASE("dropout_mask: rate, scale, determinism and bad p", "[ops]") {
  Generator g1(45), g2(45);
  const Array m = dropout_mask({200, 500}, 0.3, g1);
  const Array m2 = dropout_mask({200, 500}, 0.3, g2);
  CHECK(max_abs_diff(m, m2) == 0.0);  // same seed, same mask
  int64_t zeros = 0;
  for (double v : m.to_vector()) {
    CHECK((v == 0.0 || std::abs(v - 1 / 0.7) < 1e-6));
    zeros += v == 0.0;
  }
  CHECK(std::abs(zeros / 1e5 - 0.3) < 0.01);
  CHECK(mean(m).item() == Approx(1.0).epsilon(0.02));  // expectation preserved
  CHECK(max_abs_diff(dropout_mask({3, 3}, 0.0, g1, DType::F64), Array::ones({3, 3}, DType::F64)) == 0.0);
  CHECK(dropout_mask({4}, 0.5, g1, DType::F64).dtype() == DType::F64);
  CHECK_THROWS_WITH(dropout_mask({2}, 1.0, g1), "dropout_mask: expected p in [0, 1), got 1");
  CHECK_THROWS_WITH(dropout_mask({2}, -0.1, g1), "dropout_mask: expected p in [0, 1), got -0.1");
  CHECK_THROWS_WITH(dropout_mask({2}, 0.5, g1, DType::I64), "dropout_mask: expected a floating-point tensor, got int64");
}
