// The MPI layer in the normal build (models/distributed.h): a world of one rank, where every call is trivial, and
// the pieces data-parallel training is made of (shards of a batch, the parameter hash). The 2-rank tests are in
// tests/mpi/ (make MPI=1 test-mpi).
#include <catch2/catch.hpp>

#include "models/distributed.h"
#include "tensor/random.h"

using namespace qkvlab;

TEST_CASE("distributed: the normal build is one rank", "[distributed]") {
  dist::init(nullptr, nullptr);
  if (dist::built_with_mpi()) return;  // this binary was built with MPI=1: tests/mpi/ covers it
  CHECK(dist::rank() == 0);
  CHECK(dist::size() == 1);
}

TEST_CASE("distributed: shard_rows gives each rank its own contiguous rows", "[distributed]") {
  Array ids = Array::arange(12, DType::I64).reshape({6, 2});  // 6 examples of 2 tokens
  for (int r = 0; r < 3; ++r) {
    Array s = dist::shard_rows(ids, r, 3);
    CHECK(s.shape() == Shape{2, 2});
    CHECK(s.is_contiguous());
    CHECK(s.to_ints() == std::vector<int64_t>{4 * r, 4 * r + 1, 4 * r + 2, 4 * r + 3});
  }
  CHECK(dist::shard_rows(ids, 0, 1).to_ints() == ids.to_ints());
  CHECK_THROWS_WITH(dist::shard_rows(ids, 0, 4), Catch::Matchers::Contains("6 rows do not split into 4"));
  CHECK_THROWS_WITH(dist::shard_rows(ids, 3, 3), Catch::Matchers::Contains("rank 3 of 3"));
}

TEST_CASE("distributed: with one rank, averaging leaves gradients and loss alone", "[distributed]") {
  if (dist::size() != 1) return;
  Generator gen(1);
  Tensor w(Array::normal({3, 4}, gen), true);
  w.set_grad(Array::full({3, 4}, 0.5));
  bool stop = false;
  CHECK(dist::average_gradients({w}, 2.25, stop) == 2.25);
  CHECK_FALSE(stop);
  CHECK(w.grad().to_vector() == std::vector<double>(12, 0.5));
  CHECK(dist::parameters_agree({w}));
}

TEST_CASE("distributed: the parameter hash sees a change in any one bit", "[distributed]") {
  Generator gen(2);
  Tensor a(Array::normal({5}, gen), true), b(Array::normal({2, 3}, gen), true);
  const uint64_t h = dist::parameter_hash({a, b});
  CHECK(dist::parameter_hash({a, b}) == h);  // deterministic
  CHECK(dist::parameter_hash({b, a}) != h);  // order matters
  Array bd = b.data();
  float* p = bd.data<float>() + 5;
  float keep = *p;
  *p = std::nextafter(keep, 1e9f);  // the smallest possible change of the last value
  CHECK(dist::parameter_hash({a, b}) != h);
  *p = keep;
  CHECK(dist::parameter_hash({a, b}) == h);
}
