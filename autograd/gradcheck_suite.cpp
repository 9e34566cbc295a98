// The gradcheck suite (see gradcheck_suite.h). Each case is a few lines: the op, what it covers, the inputs, and
// the function of the leaves. Cases are grouped like autograd/ops.h.
#include "autograd/gradcheck_suite.h"

#include <cmath>
#include <exception>
#include <utility>

#include "autograd/ops.h"

namespace qkvlab {

namespace {

enum class Layout { Contiguous, Transposed, Strided };
enum class Dist { Normal, Positive, AwayFromZero };

// Makes float64 test inputs from one seeded generator.
class Inputs {
 public:
  explicit Inputs(uint64_t seed) : gen_(seed) {}

  // An array of `shape` whose values follow `dist`, stored with `layout`:
  //   Transposed: a view of a (…, s[-1], s[-2]) array through mT() (needs >= 2 dims)
  //   Strided:    every other row of a (2*s[0], …) array, starting at row 1 (step-2 slice, nonzero offset)
  Array make(const Shape& shape, Dist dist = Dist::Normal, Layout layout = Layout::Contiguous) {
    Shape base = shape;
    if (layout == Layout::Transposed) {
      check(shape.size() >= 2, "gradcheck suite: a transposed input needs 2 dims");
      std::swap(base[base.size() - 1], base[base.size() - 2]);
    } else if (layout == Layout::Strided) {
      check(!shape.empty(), "gradcheck suite: a strided input needs 1 dim");
      base[0] *= 2;
    }
    std::vector<double> v(static_cast<size_t>(shape_numel(base)));
    for (double& x : v) x = draw(dist);
    Array a = Array::from_vector(v, base);
    if (layout == Layout::Transposed) return a.mT();
    if (layout == Layout::Strided) return a.slice(0, 1, base[0], 2);
    return a;
  }
  Array normal(const Shape& s) { return make(s); }
  Array positive(const Shape& s) { return make(s, Dist::Positive); }
  Array away(const Shape& s) { return make(s, Dist::AwayFromZero); }
  Array transposed(const Shape& s, Dist d = Dist::Normal) { return make(s, d, Layout::Transposed); }
  Array strided(const Shape& s, Dist d = Dist::Normal) { return make(s, d, Layout::Strided); }

  // int64 ids in [0, n) (repeats are likely: they test scatter-add).
  Array ids(const Shape& s, int64_t n) {
    std::vector<int64_t> v(static_cast<size_t>(shape_numel(s)));
    for (int64_t& x : v) x = gen_.randint(0, n);
    return Array::from_vector(v, s);
  }
  // A 0/1 float64 mask with roughly `p` ones.
  Array mask(const Shape& s, double p = 0.4) {
    std::vector<double> v(static_cast<size_t>(shape_numel(s)));
    for (double& x : v) x = gen_.uniform() < p ? 1.0 : 0.0;
    return Array::from_vector(v, s);
  }

 private:
  double draw(Dist d) {
    switch (d) {
      case Dist::Normal: return gen_.normal();
      case Dist::Positive: return gen_.uniform(0.5, 2.0);
      case Dist::AwayFromZero: {  // |x| in [0.3, 1.5): finite differences never straddle 0
        double m = gen_.uniform(0.3, 1.5);
        return gen_.uniform() < 0.5 ? -m : m;
      }
    }
    return 0.0;
  }
  Generator gen_;
};

using X = const std::vector<Tensor>&;

}  // namespace

std::vector<std::string> gradcheck_op_names() {
  return {"add",      "sub",       "mul",         "div",         "add_scalar", "mul_scalar", "neg",
          "pow",      "exp",       "log",         "sqrt",        "tanh",       "relu",       "gelu",
          "sum",      "mean",      "max",         "reshape",     "permute",    "transpose",  "slice",
          "expand",   "unsqueeze", "squeeze",     "concat",      "split",      "contiguous", "matmul",
          "linear",   "gelu_linear", "embedding", "softmax", "scaled_causal_softmax", "log_softmax",
          "cross_entropy", "layer_norm", "dropout", "masked_fill", "where"};
}

std::vector<GradcheckCase> gradcheck_cases(uint64_t seed) {
  Inputs in(seed);
  std::vector<GradcheckCase> c;
  auto add_case = [&](std::string op, std::string name, std::vector<Array> inputs, GradcheckFn fn) {
    c.push_back({std::move(op), std::move(name), std::move(inputs), std::move(fn), {}});
  };

  // ---- elementwise, binary (broadcasting goes through an explicit expand) ----
  add_case("add", "(3,4) + (3,4)", {in.normal({3, 4}), in.normal({3, 4})}, [](X x) { return add(x[0], x[1]); });
  add_case("add", "broadcast (3,1) + (1,4)", {in.normal({3, 1}), in.normal({1, 4})},
           [](X x) { return add(x[0], x[1]); });
  add_case("add", "broadcast (2,3,4) + (4) on strided/transposed views",
           {in.strided({2, 3, 4}), in.strided({4})}, [](X x) { return x[0] + x[1]; });
  add_case("add", "same tensor twice: a + a", {in.normal({2, 3})}, [](X x) { return x[0] + x[0]; });
  add_case("sub", "broadcast (4,1,3) - transposed (2,3)", {in.normal({4, 1, 3}), in.transposed({2, 3})},
           [](X x) { return sub(x[0], x[1]); });
  add_case("sub", "a - a is zero, gradient zero", {in.normal({3})}, [](X x) { return x[0] - x[0]; });
  add_case("mul", "(3,4) * transposed (3,4)", {in.normal({3, 4}), in.transposed({3, 4})},
           [](X x) { return mul(x[0], x[1]); });
  add_case("mul", "broadcast (2,1,4) * (3,1)", {in.normal({2, 1, 4}), in.normal({3, 1})},
           [](X x) { return x[0] * x[1]; });
  add_case("mul", "same tensor twice: a * a", {in.normal({5})}, [](X x) { return x[0] * x[0]; });
  add_case("div", "(3,4) / (3,4), divisor away from 0", {in.normal({3, 4}), in.away({3, 4})},
           [](X x) { return div(x[0], x[1]); });
  add_case("div", "broadcast (3,4) / (3,1) and (4) / (2,1,4)", {in.normal({3, 4}), in.away({3, 1}), in.away({2, 1, 4})},
           [](X x) { return div(x[0], x[1]) + div(x[0], x[2]); });

  // ---- elementwise with a scalar, unary ----
  add_case("add_scalar", "a + 2.5, a - 1", {in.transposed({3, 4})}, [](X x) { return (x[0] + 2.5) * (x[0] - 1.0); });
  add_case("mul_scalar", "a * -3, 2 * a, a / 4", {in.strided({3, 2})},
           [](X x) { return x[0] * -3.0 + 2.0 * x[0] * x[0] + x[0] / 4.0; });
  add_case("neg", "-a on a transposed view", {in.transposed({2, 5})}, [](X x) { return neg(x[0]) * x[0]; });
  add_case("pow", "a^2.5, a > 0", {in.positive({3, 4})}, [](X x) { return pow(x[0], 2.5); });
  add_case("pow", "a^3 and a^-0.5 on a strided view", {in.strided({4, 3}, Dist::Positive)},
           [](X x) { return pow(x[0], 3.0) + pow(x[0], -0.5); });
  add_case("pow", "a^2 on any sign", {in.normal({6})}, [](X x) { return pow(x[0], 2.0); });
  add_case("exp", "exp(a)", {in.transposed({3, 4})}, [](X x) { return exp(x[0]); });
  add_case("log", "log(a), a > 0", {in.strided({3, 4}, Dist::Positive)}, [](X x) { return log(x[0]); });
  add_case("sqrt", "sqrt(a), a > 0", {in.transposed({4, 3}, Dist::Positive)}, [](X x) { return sqrt(x[0]); });
  add_case("tanh", "tanh(a)", {in.normal({2, 3, 4})}, [](X x) { return tanh(x[0]); });
  add_case("relu", "relu(a), |a| >= 0.3", {in.make({3, 5}, Dist::AwayFromZero, Layout::Transposed)},
           [](X x) { return relu(x[0]); });
  add_case("gelu", "gelu(a) (exact erf)", {in.strided({3, 4})}, [](X x) { return gelu(x[0]); });
  add_case("gelu", "gelu(3a) over a wide range", {in.normal({10})}, [](X x) { return gelu(x[0] * 3.0); });

  // ---- reductions ----
  add_case("sum", "sum all -> 0-d", {in.transposed({3, 4})}, [](X x) { return sum(x[0]); });
  add_case("sum", "sum dim 1", {in.normal({2, 3, 4})}, [](X x) { return sum(x[0], {1}); });
  add_case("sum", "sum dims {0,2} keepdim", {in.strided({2, 3, 4})}, [](X x) { return sum(x[0], {0, 2}, true); });
  add_case("sum", "sum dim -1 keepdim", {in.normal({3, 4})}, [](X x) { return sum(x[0], {-1}, true); });
  add_case("mean", "mean all -> 0-d", {in.normal({3, 4})}, [](X x) { return mean(x[0]); });
  add_case("mean", "mean dim 0", {in.transposed({3, 4})}, [](X x) { return mean(x[0], {0}); });
  add_case("mean", "mean dims {-1,-3} keepdim", {in.normal({2, 3, 4})},
           [](X x) { return mean(x[0], {-1, -3}, true); });
  add_case("max", "max dim 1", {in.normal({3, 5})}, [](X x) { return max(x[0], 1); });
  add_case("max", "max dim 0 keepdim on a transposed view", {in.transposed({4, 3})},
           [](X x) { return max(x[0], 0, true); });
  add_case("max", "max dim -1 of (2,3,4)", {in.strided({2, 3, 4})}, [](X x) { return max(x[0], -1); });

  // ---- shape ----
  add_case("reshape", "(3,4) -> (2,6)", {in.normal({3, 4})}, [](X x) { return reshape(x[0], {2, 6}) * 2.0; });
  add_case("reshape", "transposed (3,4) -> (12) (copies)", {in.transposed({3, 4})},
           [](X x) { return reshape(x[0], {-1}); });
  add_case("permute", "(2,3,4) -> (2,0,1)", {in.normal({2, 3, 4})}, [](X x) { return permute(x[0], {2, 0, 1}); });
  add_case("permute", "permute then multiply by a contiguous tensor", {in.strided({2, 3, 4}), in.normal({3, 4, 2})},
           [](X x) { return permute(x[0], {1, 2, 0}) * x[1]; });
  add_case("transpose", "transpose(0, -1)", {in.normal({2, 3, 4})},
           [](X x) { return transpose(x[0], 0, -1) * 2.0; });
  add_case("slice", "dim 1, 1:5:2", {in.normal({3, 6})}, [](X x) { return slice(x[0], 1, 1, 5, 2); });
  add_case("slice", "dim 0, -3:, on a strided view", {in.strided({4, 3})}, [](X x) { return slice(x[0], 0, -3, 4); });
  add_case("slice", "two overlapping slices add up", {in.normal({7})},
           [](X x) { return slice(x[0], 0, 0, 5) * slice(x[0], 0, 2, 7); });
  add_case("expand", "(3,1) -> (2,3,4)", {in.normal({3, 1})}, [](X x) { return expand(x[0], {2, 3, 4}); });
  add_case("expand", "(4) -> (3,4) times data", {in.strided({4}), in.normal({3, 4})},
           [](X x) { return expand(x[0], {3, 4}) * x[1]; });
  add_case("unsqueeze", "(3,4) -> (3,1,4)", {in.transposed({3, 4})}, [](X x) { return unsqueeze(x[0], 1) * 1.5; });
  add_case("squeeze", "(3,1,4) -> (3,4)", {in.normal({3, 1, 4})}, [](X x) { return squeeze(x[0], 1) * 1.5; });
  add_case("squeeze", "(1,5) dim -2 after unsqueeze", {in.normal({5})},
           [](X x) { return squeeze(unsqueeze(x[0], 0), -2) * x[0]; });
  add_case("concat", "three parts along dim 1, one transposed", {in.normal({2, 3}), in.transposed({2, 1}), in.normal({2, 2})},
           [](X x) { return concat({x[0], x[1], x[2]}, 1); });
  add_case("concat", "a tensor concatenated with itself along dim 0", {in.normal({2, 3})},
           [](X x) { return concat({x[0], x[0] * 2.0}, 0); });
  add_case("split", "sizes {1,2,2} along dim 1, parts reordered and scaled", {in.normal({3, 5})}, [](X x) {
    auto p = split(x[0], {1, 2, 2}, 1);
    return concat({p[2] * 3.0, p[0], -p[1]}, 1);
  });
  add_case("split", "dim 0, one part unused", {in.strided({4, 3})}, [](X x) {
    auto p = split(x[0], {1, 1, 2}, 0);
    return concat({p[0] * 2.0, p[2]}, 0);  // p[1] never used: its rows get a zero gradient
  });
  add_case("contiguous", "of a transposed view", {in.transposed({3, 4})},
           [](X x) { return contiguous(x[0]) * 0.5; });

  // ---- matmul ----
  add_case("matmul", "(3,4) @ (4,5)", {in.normal({3, 4}), in.normal({4, 5})}, [](X x) { return matmul(x[0], x[1]); });
  add_case("matmul", "batched (2,3,4) @ (2,4,5)", {in.normal({2, 3, 4}), in.normal({2, 4, 5})},
           [](X x) { return matmul(x[0], x[1]); });
  add_case("matmul", "broadcast batch (2,1,3,4) @ (3,4,2)", {in.normal({2, 1, 3, 4}), in.normal({3, 4, 2})},
           [](X x) { return matmul(x[0], x[1]); });
  add_case("matmul", "(2,3,4) @ (4,5): 2-D right operand broadcast", {in.normal({2, 3, 4}), in.normal({4, 5})},
           [](X x) { return matmul(x[0], x[1]); });
  add_case("matmul", "transposed operand views (3,4)^T-stored @ (4,2)^T-stored",
           {in.transposed({3, 4}), in.transposed({4, 2})}, [](X x) { return matmul(x[0], x[1]); });
  add_case("matmul", "x @ transpose(w) (Linear)", {in.normal({2, 3, 4}), in.normal({5, 4})},
           [](X x) { return matmul(x[0], transpose(x[1], 0, 1)); });
  add_case("matmul", "1-D @ 2-D", {in.normal({4}), in.normal({4, 3})}, [](X x) { return matmul(x[0], x[1]); });
  add_case("matmul", "3-D @ 1-D", {in.normal({2, 3, 4}), in.strided({4})}, [](X x) { return matmul(x[0], x[1]); });
  add_case("matmul", "1-D @ 1-D -> 0-d", {in.normal({5}), in.normal({5})}, [](X x) { return matmul(x[0], x[1]); });
  add_case("matmul", "a @ a^T (same tensor twice)", {in.normal({3, 4})},
           [](X x) { return matmul(x[0], transpose(x[0], 0, 1)); });
  add_case("linear", "(2,3,4) @ w(5,4)^T + b(5)", {in.normal({2, 3, 4}), in.normal({5, 4}), in.normal({5})},
           [](X x) { return linear(x[0], x[1], x[2]); });
  add_case("linear", "no bias, strided input and weight", {in.transposed({4, 3}), in.transposed({4, 2})},
           [](X x) { return linear(transpose(x[0], 0, 1), transpose(x[1], 0, 1), Tensor()); });
  add_case("gelu_linear", "gelu(h (2,3,4)) @ w(5,4)^T + b(5)",
           {in.normal({2, 3, 4}), in.normal({5, 4}), in.normal({5})},
           [](X x) { return gelu_linear(x[0], x[1], x[2]); });
  add_case("gelu_linear", "no bias, 3h over a wide range, transposed weight",
           {in.normal({3, 4}), in.transposed({2, 4})}, [](X x) { return gelu_linear(x[0] * 3.0, x[1], Tensor()); });

  // ---- neural-network ops ----
  {
    Array ids = in.ids({2, 5}, 4);  // 10 ids over 4 rows: repeats guaranteed
    add_case("embedding", "(4,3) table, ids (2,5) with repeats", {in.normal({4, 3})},
             [ids](X x) { return embedding(x[0], ids); });
    Array ids1 = Array::from_vector(std::vector<int64_t>{2, 0, 2}, {3});
    add_case("embedding", "transposed table, ids (3)", {in.transposed({3, 4})},
             [ids1](X x) { return embedding(x[0], ids1); });
  }
  add_case("softmax", "dim -1", {in.normal({3, 5})}, [](X x) { return softmax(x[0], -1); });
  add_case("softmax", "dim 0 of a transposed (2,4,3) view", {in.transposed({2, 4, 3})},
           [](X x) { return softmax(x[0], 0); });
  add_case("softmax", "dim 1 of (2,3,4)", {in.strided({2, 3, 4})}, [](X x) { return softmax(x[0], 1); });
  {
    // Drawn from a generator of their own: these cases came later, and drawing from `in` would have changed the
    // inputs (and the published errors) of every case after them.
    Inputs att(seed + 1);
    add_case("scaled_causal_softmax", "(2,3,4,4) causal, scale 0.5", {att.normal({2, 3, 4, 4})},
             [](X x) { return scaled_causal_softmax(x[0], 0.5, true); });
    add_case("scaled_causal_softmax", "(2,3,5) not causal, scale 8^-0.5, transposed view", {att.transposed({2, 3, 5})},
             [](X x) { return scaled_causal_softmax(x[0], 1.0 / std::sqrt(8.0), false); });
    add_case("scaled_causal_softmax", "T < S: (2,3,6) causal (3 cached keys), strided view", {att.strided({2, 3, 6})},
             [](X x) { return scaled_causal_softmax(x[0], 0.7, true); });
  }
  add_case("log_softmax", "dim -1", {in.normal({3, 5})}, [](X x) { return log_softmax(x[0], -1); });
  add_case("log_softmax", "dim 1 of a transposed view", {in.transposed({2, 3, 4})},
           [](X x) { return log_softmax(x[0], 1); });
  {
    Array t = Array::from_vector(std::vector<int64_t>{0, 3, 1, 4}, {4});
    add_case("cross_entropy", "(4,5) logits", {in.normal({4, 5})}, [t](X x) { return cross_entropy(x[0], t); });
    Array t2 = Array::from_vector(std::vector<int64_t>{2, -100, 0, 1, -100, 3}, {2, 3});
    add_case("cross_entropy", "(2,3,4) logits, ignore_index -100 on 2 rows", {in.normal({2, 3, 4})},
             [t2](X x) { return cross_entropy(x[0], t2); });
    Array t3 = Array::from_vector(std::vector<int64_t>{1, 0, 1}, {3});
    add_case("cross_entropy", "transposed (3,4) logits, ignore_index 0", {in.transposed({3, 4})},
             [t3](X x) { return cross_entropy(x[0], t3, 0); });
  }
  add_case("layer_norm", "(2,3,5) with weight and bias", {in.normal({2, 3, 5}), in.normal({5}), in.normal({5})},
           [](X x) { return layer_norm(x[0], x[1], x[2]); });
  add_case("layer_norm", "transposed (4,6) input, weight only", {in.transposed({4, 6}), in.normal({6})},
           [](X x) { return layer_norm(x[0], x[1], Tensor()); });
  add_case("layer_norm", "no weight, no bias, eps 1e-3", {in.strided({3, 4})},
           [](X x) { return layer_norm(x[0], Tensor(), Tensor(), 1e-3); });
  add_case("dropout", "p 0.3, fixed-seed mask drawn inside the function", {in.normal({4, 6})}, [](X x) {
    Generator g(42);  // a fresh generator per call: every evaluation draws the same mask
    return dropout(x[0], 0.3, true, g);
  });
  add_case("dropout", "training=false is the identity", {in.normal({3})}, [](X x) {
    Generator g(42);
    return dropout(x[0], 0.5, false, g) * x[0];
  });
  {
    Array m = Array::from_vector(std::vector<double>{1, 0, 0, 1}, {1, 4});  // some filled, some not
    add_case("masked_fill", "(3,4) with a broadcast (1,4) mask", {in.normal({3, 4})},
             [m](X x) { return masked_fill(x[0], m, -1e4); });
    Array causal = Array::zeros({3, 3}, DType::F64);
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = i + 1; j < 3; ++j) causal.set({i, j}, 1.0);
    add_case("masked_fill", "causal mask then softmax (the attention pattern)", {in.transposed({2, 3, 3})},
             [causal](X x) { return softmax(masked_fill(x[0], causal, -1e9), -1); });
  }
  {
    Array cond = in.mask({3, 4}, 0.5);
    cond.set({0, 0}, 1.0);  // both branches are taken whatever the draw
    cond.set({0, 1}, 0.0);
    add_case("where", "(3,4) cond, a (3,4), b (3,4)", {in.normal({3, 4}), in.transposed({3, 4})},
             [cond](X x) { return where(cond, x[0], x[1]); });
    Array cond2 = in.mask({2, 3, 1}, 0.5);
    cond2.set({0, 0, 0}, 1.0);
    cond2.set({1, 0, 0}, 0.0);
    add_case("where", "broadcast cond (2,3,1), a (3,4), b (4)", {in.normal({3, 4}), in.normal({4})},
             [cond2](X x) { return where(cond2, x[0], x[1]); });
  }

  // ---- compositions: the graphs the models build ----
  add_case("attention", "softmax(q k^T / sqrt(d), causal) v, q = k (shared)", {in.normal({2, 3, 4}), in.normal({2, 3, 4})},
           [](X x) {
             const Tensor& k = x[0];
             Array causal = Array::zeros({3, 3}, DType::F64);
             for (int64_t i = 0; i < 3; ++i)
               for (int64_t j = i + 1; j < 3; ++j) causal.set({i, j}, 1.0);
             Tensor s = matmul(k, transpose(k, -2, -1)) * (1.0 / std::sqrt(4.0));  // (B,T,T)
             return matmul(softmax(masked_fill(s, causal, -1e9), -1), x[1]);       // (B,T,D)
           });
  add_case("mlp", "cross_entropy(gelu(layer_norm(x) @ W1^T + b1) @ W2^T)",
           {in.normal({4, 3}), in.normal({5, 3}), in.normal({5}), in.normal({2, 5})}, [](X x) {
             Array t = Array::from_vector(std::vector<int64_t>{0, 1, -100, 1}, {4});
             Tensor h = gelu(matmul(layer_norm(x[0], Tensor(), Tensor()), transpose(x[1], 0, 1)) + x[2]);
             return cross_entropy(matmul(h, transpose(x[3], 0, 1)), t);
           });
  return c;
}

std::vector<GradcheckRow> run_gradcheck_suite(const std::string& filter, uint64_t seed) {
  return run_gradcheck_cases(gradcheck_cases(seed), filter);
}

std::vector<GradcheckRow> run_gradcheck_cases(const std::vector<GradcheckCase>& cases, const std::string& filter) {
  std::vector<GradcheckRow> rows;
  for (const GradcheckCase& gc : cases) {
    if (!filter.empty() && gc.op.find(filter) == std::string::npos && gc.name.find(filter) == std::string::npos)
      continue;
    GradcheckRow row;
    row.op = gc.op;
    row.name = gc.name;
    try {
      GradcheckResult r = gradcheck(gc.fn, gc.inputs, gc.op + ": " + gc.name, gc.options);
      row.ok = r.ok;
      row.max_abs_error = r.max_abs_error;
      row.max_rel_error = r.max_rel_error;
      row.elements = r.elements;
      row.message = r.message;
    } catch (const std::exception& e) {
      row.ok = false;
      row.message = gc.op + ": " + gc.name + ": threw: " + e.what();
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace qkvlab
