// The threaded kernels against one thread (also the ThreadSanitizer suite's own test: make tsan-check runs it
// with 2 threads): a matmul big enough to be split across threads, the parallel elementwise and reduction loops,
// softmax, attention softmax and layer norm rows. Threads split the work but never reorder a sum, so results are
// bit-identical.
#include <catch2/catch.hpp>

#include "tests/test_util.h"

#include <vector>

#include "tensor/ops.h"
#include "tensor/parallel.h"
#include "tensor/random.h"

using namespace qkvlab;

namespace {
using Threads = testing::ThreadCount;

std::vector<std::vector<double>> kernels(int threads) {
  Threads t(threads);
  Generator gen(21);
  Array a = Array::normal({3, 96, 80}, gen), b = Array::normal({3, 80, 72}, gen);
  // Big enough to be split: elementwise loops above 2 x 32768 elements, full reductions above 8 x 32768.
  Array x = Array::normal({1200, 260}, gen), w = Array::normal({260}, gen), bias = Array::normal({260}, gen);
  std::vector<std::vector<double>> out;
  out.push_back(matmul(a, b).to_vector());
  out.push_back(add(mul(x, x), exp(x)).to_vector());
  out.push_back(sum(x, {1}).to_vector());
  out.push_back(sum(x, {0}).to_vector());
  out.push_back(sum(x).to_vector());
  out.push_back(softmax(x, -1).to_vector());
  out.push_back(layer_norm(x, w, bias, 1e-5).y.to_vector());
  const Array p = scaled_causal_softmax(x.reshape({12, 100, 260}), 0.125, true);  // 100 queries, 260 keys
  out.push_back(p.to_vector());
  out.push_back(scaled_causal_softmax_backward(p, exp(x).reshape({12, 100, 260}), 0.125, true).to_vector());
  return out;
}
}  // namespace

TEST_CASE("threaded kernels give the one-thread results, bit for bit", "[reliability][threads]") {
  const auto one = kernels(1);
  for (int n : {2, 3}) {
    INFO(n << " threads");
    const auto many = kernels(n);
    REQUIRE(many.size() == one.size());
    for (size_t i = 0; i < one.size(); ++i) {
      INFO("kernel " << i);
      CHECK(many[i] == one[i]);
    }
  }
}
