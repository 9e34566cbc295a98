// gradcheck itself and the gradcheck suite: every case of the suite passes on every element, every op of
// autograd/ops.h has a case, and a deliberately wrong backward is caught with a message that points at it.
#include <catch2/catch.hpp>

#include <set>

#include "autograd/gradcheck.h"
#include "autograd/gradcheck_suite.h"
#include "autograd/node.h"
#include "autograd/ops.h"

using namespace qkvlab;

namespace {

// A mul whose backward is wrong in a controlled way: the gradient of input 0 is scaled by `scale`, and
// element `flip` (flat index, -1 for none) of it has its sign flipped.
struct WrongMulBackward : Node {
  Array a, b;
  double scale = 1.0;
  int64_t flip = -1;
  const char* name() const override { return "WrongMulBackward"; }
  std::vector<Array> backward(const Array& g) override {
    Array ga = mul(mul(g, b), scale).contiguous();
    if (flip >= 0) {
      Array flat = ga.reshape({-1});
      flat.set({flip}, -flat.at({flip}));
    }
    return {ga, mul(g, a)};
  }
};

Tensor wrong_mul(const Tensor& a, const Tensor& b, double scale, int64_t flip) {
  return record<WrongMulBackward>(mul(a.data(), b.data()), {&a, &b}, Loc::current(), [&](WrongMulBackward& n) {
    n.a = a.data();
    n.b = b.data();
    n.scale = scale;
    n.flip = flip;
  });
}

// scaled_causal_softmax with a backward that makes one of the two classic mistakes: forgetting the scale, or
// forgetting the sum_j g_j p_j term (d x = scale * p * g, softmax's backward taken as elementwise).
enum class AttentionSoftmaxBug { None, NoScale, NoSum };
struct WrongAttentionSoftmaxBackward : Node {
  Array p;
  double scale = 1.0;
  AttentionSoftmaxBug bug = AttentionSoftmaxBug::None;
  const char* name() const override { return "WrongAttentionSoftmaxBackward"; }
  std::vector<Array> backward(const Array& g) override {
    switch (bug) {
      case AttentionSoftmaxBug::None: return {scaled_causal_softmax_backward(p, g, scale, true)};
      case AttentionSoftmaxBug::NoScale: return {scaled_causal_softmax_backward(p, g, 1.0, true)};
      case AttentionSoftmaxBug::NoSum: return {mul(mul(p, g), scale)};
    }
    return {};
  }
};

Tensor wrong_attention_softmax(const Tensor& x, double scale, AttentionSoftmaxBug bug) {
  Array p = scaled_causal_softmax(x.data(), scale, true);
  return record<WrongAttentionSoftmaxBackward>(p, {&x}, Loc::current(), [&](WrongAttentionSoftmaxBackward& n) {
    n.p = p;
    n.scale = scale;
    n.bug = bug;
  });
}

}  // namespace

TEST_CASE("every case of the gradcheck suite passes on every element in float64", "[autograd][gradcheck]") {
  std::vector<GradcheckRow> rows = run_gradcheck_suite();
  REQUIRE(rows.size() >= 60);
  double worst = 0.0;
  for (const GradcheckRow& r : rows) {
    INFO(r.op << ": " << r.name << ": " << r.message);
    CHECK(r.ok);
    CHECK(r.elements > 0);
    CHECK(r.max_abs_error < 1e-6);
    worst = std::max(worst, r.max_abs_error);
  }
  // Central differences in float64 with h = 1e-6 are good to ~1e-9 here; far more means something drifted.
  CHECK(worst < 1e-7);
}

TEST_CASE("the gradcheck suite has a case for every op in autograd/ops.h", "[autograd][gradcheck]") {
  std::set<std::string> covered;
  for (const GradcheckCase& c : gradcheck_cases()) {
    covered.insert(c.op);
    for (const Array& a : c.inputs) CHECK(a.dtype() == DType::F64);
  }
  for (const std::string& op : gradcheck_op_names()) {
    INFO("no gradcheck case for " << op);
    CHECK(covered.count(op) == 1);
  }
  // Non-contiguous inputs are part of the suite, not an afterthought.
  int strided = 0;
  for (const GradcheckCase& c : gradcheck_cases())
    for (const Array& a : c.inputs) strided += a.is_contiguous() ? 0 : 1;
  CHECK(strided >= 20);
}

TEST_CASE("run_gradcheck_suite filters by op or case name and reports a throwing case as a failed row",
          "[autograd][gradcheck]") {
  auto rows = run_gradcheck_suite("layer_norm");  // the 3 layer_norm cases and the mlp case that uses it
  REQUIRE(rows.size() == 4);
  CHECK(std::count_if(rows.begin(), rows.end(), [](auto& r) { return r.op == "layer_norm"; }) == 3);
  CHECK(run_gradcheck_suite("no such op").empty());
  CHECK(run_gradcheck_suite("ignore_index").size() == 2);

  std::vector<GradcheckCase> cases;
  cases.push_back({"matmul", "inner dims differ", {Array::zeros({2, 3}, DType::F64), Array::zeros({4, 2}, DType::F64)},
                   [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, {}});
  cases.push_back({"exp", "fine", {Array::zeros({2}, DType::F64)},
                   [](const std::vector<Tensor>& x) { return exp(x[0]); }, {}});
  auto out = run_gradcheck_cases(cases);
  REQUIRE(out.size() == 2);
  CHECK_FALSE(out[0].ok);
  CHECK_THAT(out[0].message, Catch::Contains("matmul: inner dims differ") && Catch::Contains("threw"));
  CHECK(out[1].ok);
  CHECK(out[1].elements == 2);
}

TEST_CASE("gradcheck catches a backward scaled by 1.01 and names the op, input and element",
          "[autograd][gradcheck]") {
  Generator gen(3);
  std::vector<Array> in{Array::normal({2, 3}, gen, 0, 1, DType::F64), Array::normal({2, 3}, gen, 0, 1, DType::F64)};
  auto bad = [](const std::vector<Tensor>& x) { return wrong_mul(x[0], x[1], 1.01, -1); };
  GradcheckResult r = gradcheck(bad, in, "wrong_mul");
  CHECK_FALSE(r.ok);
  CHECK(r.max_abs_error > 1e-4);
  CHECK(r.elements == 12);
  CHECK_THAT(r.message, Catch::Contains("wrong_mul") && Catch::Contains("WrongMulBackward") &&
                            Catch::Contains("input 0") && Catch::Contains("element (0,0)") &&
                            Catch::Contains("analytic") && Catch::Contains("numeric"));

  // The same op with a correct backward passes: the failure above is the 1.01 and nothing else.
  auto good = [](const std::vector<Tensor>& x) { return wrong_mul(x[0], x[1], 1.0, -1); };
  CHECK(gradcheck(good, in, "wrong_mul").ok);
}

TEST_CASE("gradcheck catches a wrong sign on one element and names that element", "[autograd][gradcheck]") {
  Generator gen(4);
  std::vector<Array> in{Array::normal({2, 3}, gen, 0, 1, DType::F64), Array::normal({2, 3}, gen, 0, 1, DType::F64)};
  auto bad = [](const std::vector<Tensor>& x) { return wrong_mul(x[0], x[1], 1.0, 4); };  // flat 4 = (1,1)
  GradcheckResult r = gradcheck(bad, in, "sign_flip");
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.message, Catch::Contains("sign_flip") && Catch::Contains("input 0") && Catch::Contains("(1,1)"));
}

TEST_CASE("gradcheck refuses inputs it cannot perturb independently, and a non-deterministic function",
          "[autograd][gradcheck]") {
  Generator gen(5);
  auto id = [](const std::vector<Tensor>& x) { return x[0] * 2.0; };
  Array base = Array::normal({3}, gen, 0, 1, DType::F64);
  CHECK_THROWS_WITH(gradcheck(id, {base.expand({2, 3})}, "expanded"), Catch::Contains("expanded view"));
  auto two = [](const std::vector<Tensor>& x) { return x[0] * x[1]; };
  CHECK_THROWS_WITH(gradcheck(two, {base, base}, "shared"), Catch::Contains("share storage"));
  Generator shared(9);  // drawn from across calls: every evaluation gets a different mask
  auto noisy = [&shared](const std::vector<Tensor>& x) { return dropout(x[0], 0.5, true, shared); };
  CHECK_THROWS_WITH(gradcheck(noisy, {Array::normal({8}, gen, 0, 1, DType::F64)}, "noisy"),
                    Catch::Contains("not deterministic"));
}

TEST_CASE("gradcheck leaves float64 inputs as they came and converts float32 ones", "[autograd][gradcheck]") {
  Generator gen(6);
  Array a = Array::normal({3, 4}, gen, 0, 1, DType::F64).mT();  // a non-contiguous view
  std::vector<double> before = a.to_vector();
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& x) { return tanh(x[0]); }, {a}, "tanh");
  CHECK(r.ok);
  CHECK(a.to_vector() == before);
  GradcheckResult r32 = gradcheck([](const std::vector<Tensor>& x) { return exp(x[0]); },
                                  {Array::normal({5}, gen)}, "exp f32");
  CHECK(r32.ok);
  CHECK(r32.elements == 5);
}

TEST_CASE("gradcheck catches a scaled_causal_softmax backward without the scale or without the sum term",
          "[autograd][gradcheck][attention_softmax]") {
  Generator gen(7);
  const std::vector<Array> in{Array::normal({2, 3, 5}, gen, 0, 1, DType::F64)};  // T = 3 queries, S = 5 keys
  auto with = [](AttentionSoftmaxBug bug) {
    return [bug](const std::vector<Tensor>& x) { return wrong_attention_softmax(x[0], 0.5, bug); };
  };
  GradcheckResult no_scale = gradcheck(with(AttentionSoftmaxBug::NoScale), in, "no_scale");
  CHECK_FALSE(no_scale.ok);
  CHECK_THAT(no_scale.message, Catch::Contains("WrongAttentionSoftmaxBackward") && Catch::Contains("input 0"));
  GradcheckResult no_sum = gradcheck(with(AttentionSoftmaxBug::NoSum), in, "no_sum");
  CHECK_FALSE(no_sum.ok);
  CHECK_THAT(no_sum.message, Catch::Contains("WrongAttentionSoftmaxBackward"));
  // The real backward through the same node passes: the failures above are the bugs and nothing else.
  GradcheckResult right = gradcheck(with(AttentionSoftmaxBug::None), in, "right");
  CHECK(right.ok);
  CHECK(right.elements == 30);
  // And so does the op itself on the same input, causal or not.
  for (bool causal : {true, false}) {
    GradcheckResult r = gradcheck(
        [causal](const std::vector<Tensor>& x) { return scaled_causal_softmax(x[0], 0.5, causal); }, in, "op");
    INFO(r.message);
    CHECK(r.ok);
  }
}
