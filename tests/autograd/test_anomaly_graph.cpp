// Anomaly mode, graph printing, and the live-tensor counter over a small training loop.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "autograd/graph.h"
#include "autograd/node.h"
#include "autograd/ops.h"

using namespace qkvlab;

TEST_CASE("anomaly mode: a NaN or Inf in a forward output names the op and the calling line",
          "[autograd][anomaly]") {
  AnomalyGuard anomaly;
  REQUIRE(anomaly_enabled());
  Tensor neg(Array::from_vector(std::vector<float>{1, -1}, {2}), true);
  CHECK_THROWS_WITH(log(neg), Catch::Contains("LogBackward") && Catch::Contains("NaN or Inf") &&
                                  Catch::Contains("test_anomaly_graph.cpp"));
  Tensor zero(Array::zeros({3}), true);
  CHECK_THROWS_WITH(log(zero), Catch::Contains("LogBackward"));  // -inf
  CHECK_THROWS_WITH(div(zero, zero), Catch::Contains("DivBackward"));  // 0/0
  // Also without any input requiring grad (evaluation code is checked too).
  Tensor c(Array::zeros({2}));
  CHECK_THROWS_WITH(div(c, c), Catch::Contains("DivBackward"));
}

TEST_CASE("an op records the line that called it, operators included", "[autograd][anomaly]") {
  Tensor a(Array::ones({2}), true), b(Array::ones({2}), true);
  Tensor y = a * b;
  const unsigned line = __LINE__ - 1;
  CHECK_THAT(y.grad_fn()->created_at.file_name(), Catch::EndsWith("test_anomaly_graph.cpp"));
  CHECK(y.grad_fn()->created_at.line() == line);
  Tensor z = 2.0 * -y;
  CHECK(z.grad_fn()->created_at.line() == line + 4);
  CHECK(z.grad_fn()->next[0]->created_at.line() == line + 4);  // the NegBackward under it
  Tensor m = matmul(a, b);
  CHECK(m.grad_fn()->created_at.line() == line + 7);

  AnomalyGuard anomaly;
  Tensor zero(Array::zeros({2}), true);
  const std::string here = "test_anomaly_graph.cpp:" + std::to_string(__LINE__ + 1);
  CHECK_THROWS_WITH(zero / zero, Catch::Contains("DivBackward") && Catch::Contains(here));
}

TEST_CASE("anomaly mode off: NaNs flow through silently", "[autograd][anomaly]") {
  AnomalyGuard off(false);
  Tensor zero(Array::zeros({3}), true);
  Tensor q = div(zero, zero);
  CHECK(std::isnan(q.data().to_vector()[0]));
}

TEST_CASE("anomaly mode: a NaN/Inf that appears only in backward names the backward op and its creation site",
          "[autograd][anomaly]") {
  AnomalyGuard anomaly;
  Tensor x(Array::from_vector(std::vector<float>{0, 4}, {2}), true);
  Tensor y = sqrt(x);  // forward is fine: (0, 2); d sqrt / dx at 0 = inf
  Tensor loss = sum(y * 3.0);
  try {
    loss.backward();
    FAIL("backward should have thrown");
  } catch (const Error& e) {
    std::string m = e.what();
    CHECK_THAT(m, Catch::Contains("SqrtBackward") && Catch::Contains("during backward") &&
                      Catch::Contains("created at") && Catch::Contains("test_anomaly_graph.cpp"));
    // The creation call stack, demangled, is part of the message in anomaly mode.
    CHECK_THAT(m, Catch::Contains("call stack at creation"));
  }
}

TEST_CASE("without anomaly mode the backward of sqrt at 0 gives inf and no error", "[autograd][anomaly]") {
  AnomalyGuard off(false);
  Tensor x(Array::from_vector(std::vector<float>{0, 4}, {2}), true);
  sum(sqrt(x)).backward();
  CHECK(std::isinf(x.grad().to_vector()[0]));
  CHECK(x.grad().to_vector()[1] == Approx(0.25));
}

TEST_CASE("print_graph lists every node with its name, shape and inputs", "[autograd][graph]") {
  Generator gen(1);
  Tensor x(Array::normal({2, 3}, gen));
  Tensor w = Tensor(Array::normal({3, 4}, gen), true).set_name("w");
  Tensor b = Tensor(Array::normal({4}, gen), true).set_name("b");
  Tensor loss = sum(gelu(matmul(x, w) + b));
  std::string g = print_graph(loss);
  INFO(g);
  CHECK_THAT(g, Catch::StartsWith("#0 SumBackward ()"));
  CHECK_THAT(g, Catch::Contains("GeluBackward (2,4)"));
  CHECK_THAT(g, Catch::Contains("AddBackward (2,4)"));
  CHECK_THAT(g, Catch::Contains("MatmulBackward (2,4)"));
  CHECK_THAT(g, Catch::Contains("ExpandBackward (2,4)"));  // b broadcast from (4)
  CHECK_THAT(g, Catch::Contains("leaf 'w' (3,4)"));
  CHECK_THAT(g, Catch::Contains("leaf 'b' (4,)"));
  CHECK_THAT(g, Catch::Contains("#0 SumBackward () <- #1"));
  CHECK(std::count(g.begin(), g.end(), '\n') == 7);  // sum, gelu, add, matmul, expand, w, b: x has no node
  CHECK_THAT(g, !Catch::Contains("[freed]"));
  loss.backward();
  CHECK_THAT(print_graph(loss), Catch::Contains("[freed]"));

  CHECK_THAT(print_graph(x), Catch::Contains("no graph"));
}

TEST_CASE("to_dot writes a Graphviz graph with op boxes, leaf ellipses and shapes", "[autograd][graph]") {
  Generator gen(2);
  Tensor w = Tensor(Array::normal({3, 4}, gen), true).set_name("layer.\"w\"");
  Tensor h = Tensor(Array::normal({5, 3}, gen), true);
  Tensor loss = mean(softmax(matmul(h, w), -1));
  std::string d = to_dot_string(loss);
  INFO(d);
  CHECK_THAT(d, Catch::StartsWith("digraph autograd {"));
  CHECK_THAT(d, Catch::Contains("MeanBackward\\n()"));
  CHECK_THAT(d, Catch::Contains("SoftmaxBackward\\n(5,4)"));
  CHECK_THAT(d, Catch::Contains("MatmulBackward\\n(5,4)"));
  CHECK_THAT(d, Catch::Contains("shape=ellipse"));
  CHECK_THAT(d, Catch::Contains("(3,4)"));
  CHECK_THAT(d, Catch::Contains("layer.\\\"w\\\""));  // quotes in names are escaped: the file stays valid DOT
  CHECK_THAT(d, Catch::Contains("n1 -> n0;"));
  CHECK_THAT(d, Catch::EndsWith("}\n"));

  std::string path = "build/test_autograd_graph.dot";
  std::remove(path.c_str());
  to_dot(loss, path);
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  CHECK(ss.str() == d);
  std::remove(path.c_str());
  CHECK_THROWS_WITH(to_dot(loss, "/nonexistent-dir/g.dot"), Catch::Contains("/nonexistent-dir/g.dot"));
}

TEST_CASE("the live-tensor count returns to its baseline after every step of a small training loop",
          "[autograd][leak]") {
  // A 2-layer MLP: logits = gelu(x @ W1^T + b1) @ W2^T + b2, cross-entropy, plain SGD written inline.
  Generator gen(7);
  const int64_t N = 16, D = 4, H = 12, C = 3;
  Tensor x(Array::normal({N, D}, gen));
  std::vector<int64_t> tv(N);
  for (int64_t i = 0; i < N; ++i) tv[i] = (x.data().at({i, 0}) > 0 ? 1 : 0) + (x.data().at({i, 1}) > 0.5 ? 1 : 0);
  Array targets = Array::from_vector(tv, {N});
  Tensor w1(Array::normal({H, D}, gen, 0.0, 0.5), true), b1(Array::zeros({H}), true);
  Tensor w2(Array::normal({C, H}, gen, 0.0, 0.5), true), b2(Array::zeros({C}), true);
  std::vector<Tensor> params{w1, b1, w2, b2};

  const int64_t tensors0 = Tensor::live_count();
  const int64_t storages0 = Storage::live_count();
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    {
      Tensor h = gelu(matmul(x, transpose(w1, 0, 1)) + b1);       // (N,H)
      Tensor logits = matmul(h, transpose(w2, 0, 1)) + b2;         // (N,C)
      Tensor loss = cross_entropy(logits, targets);                // ()
      loss.backward();
      (step == 0 ? first : last) = loss.item();
      NoGradGuard no_grad;
      for (Tensor& p : params) {
        Array d = p.data();
        axpy_(d, -0.5, p.grad());
        p.zero_grad();
      }
    }
    INFO("step " << step);
    REQUIRE(Tensor::live_count() == tensors0);
    REQUIRE(Storage::live_count() == storages0);
  }
  CHECK(last < first * 0.7);  // it learns (the test would pass vacuously on a loop that does nothing)
}
