// Elementwise ops: forward and backward side by side. Binary ops first expand both inputs to the broadcast
// shape (an ExpandBackward node sums the gradient back), so each backward here sees equal shapes.
#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace qkvlab {

namespace {
// Broadcasts a and b to a common shape through differentiable expands; no-ops when shapes already agree.
std::pair<Tensor, Tensor> broadcast_pair(const Tensor& a, const Tensor& b, const char* op, const Loc& loc) {
  check(a.dtype() == b.dtype(), op, ": dtypes differ: ", dtype_name(a.dtype()), " and ", dtype_name(b.dtype()));
  if (a.shape() == b.shape()) return {a, b};
  Shape s = broadcast_shapes(a.shape(), b.shape(), op);
  return {a.shape() == s ? a : expand(a, s, loc), b.shape() == s ? b : expand(b, s, loc)};
}
}  // namespace

struct AddBackward : Node {
  const char* name() const override { return "AddBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g, g}; }
};
namespace {
// An operand whose buffer the sum may be written over: this Tensor is its only holder (a temporary moved into
// add's parameter), its Array the only one on its storage (no node kept it for backward, no view of it is alive),
// dense (add returns a dense array) and of the sum's shape. (AddBackward needs neither operand's values.)
bool reusable(const Tensor& t, const Shape& sum_shape) {
  return t.impl().use_count() == 1 && t.data().storage().use_count() == 1 && t.data().is_contiguous() &&
         t.shape() == sum_shape;
}
}  // namespace
Tensor add(Tensor a0, Tensor b0, const Loc& loc) {
  ProfileScope prof("add");
  check(a0.dtype() == b0.dtype(), "add: dtypes differ: ", dtype_name(a0.dtype()), " and ", dtype_name(b0.dtype()));
  const Shape s = a0.shape() == b0.shape() ? a0.shape() : broadcast_shapes(a0.shape(), b0.shape(), "add");
  const bool floating = a0.dtype() == DType::F32 || a0.dtype() == DType::F64;  // others: add's own error below
  for (Tensor* t : {&a0, &b0}) {
    if (!floating || !reusable(*t, s)) continue;
    Tensor& other = t == &a0 ? b0 : a0;
    if (other.shape() != s) other = expand(other, s, loc);
    Array sum = t->data();
    add_(sum, other.data());  // a + b, or b + a: the same sum (addition is commutative)
    return record<AddBackward>(sum, {&a0, &b0}, loc, [](AddBackward&) {});
  }
  // the dtypes and the sum's shape are checked above: expand to it directly (broadcast_pair would check again)
  const Tensor a = a0.shape() == s ? a0 : expand(a0, s, loc), b = b0.shape() == s ? b0 : expand(b0, s, loc);
  return record<AddBackward>(add(a.data(), b.data()), {&a, &b}, loc, [](AddBackward&) {});
}

struct SubBackward : Node {
  const char* name() const override { return "SubBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g, needs_grad(1) ? neg(g) : Array()}; }
};
Tensor sub(const Tensor& a0, const Tensor& b0, const Loc& loc) {
  ProfileScope prof("sub");
  const auto ab = broadcast_pair(a0, b0, "sub", loc);  // not a structured binding: clang 14 cannot capture one
  const Tensor &a = ab.first, &b = ab.second;
  return record<SubBackward>(sub(a.data(), b.data()), {&a, &b}, loc, [](SubBackward&) {});
}

struct MulBackward : Node {
  Array a, b;
  const char* name() const override { return "MulBackward"; }
  std::vector<Array> backward(const Array& g) override {
    return {needs_grad(0) ? g * b : Array(), needs_grad(1) ? g * a : Array()};
  }
  void release_saved() override { a = b = Array(); }
};
Tensor mul(const Tensor& a0, const Tensor& b0, const Loc& loc) {
  ProfileScope prof("mul");
  const auto ab = broadcast_pair(a0, b0, "mul", loc);  // not a structured binding: clang 14 cannot capture one
  const Tensor &a = ab.first, &b = ab.second;
  return record<MulBackward>(mul(a.data(), b.data()), {&a, &b}, loc, [&](MulBackward& n) {
    if (b.requires_grad()) n.a = a.data();
    if (a.requires_grad()) n.b = b.data();
  });
}

struct DivBackward : Node {
  Array a, b;
  const char* name() const override { return "DivBackward"; }
  std::vector<Array> backward(const Array& g) override {
    Array ga = needs_grad(0) ? g / b : Array();
    Array gb = needs_grad(1) ? neg(g * a / (b * b)) : Array();  // d(a/b)/db = -a/b^2
    return {ga, gb};
  }
  void release_saved() override { a = b = Array(); }
};
Tensor div(const Tensor& a0, const Tensor& b0, const Loc& loc) {
  ProfileScope prof("div");
  const auto ab = broadcast_pair(a0, b0, "div", loc);  // not a structured binding: clang 14 cannot capture one
  const Tensor &a = ab.first, &b = ab.second;
  return record<DivBackward>(div(a.data(), b.data()), {&a, &b}, loc, [&](DivBackward& n) {
    n.a = a.data();
    n.b = b.data();
  });
}

struct AddScalarBackward : Node {
  const char* name() const override { return "AddScalarBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g}; }
};
Tensor add(const Tensor& a, double b, const Loc& loc) {
  ProfileScope prof("add(scalar)");
  return record<AddScalarBackward>(add(a.data(), b), {&a}, loc, [](AddScalarBackward&) {});
}

struct MulScalarBackward : Node {
  double s = 0;
  const char* name() const override { return "MulScalarBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g * s}; }
};
Tensor mul(const Tensor& a, double b, const Loc& loc) {
  ProfileScope prof("mul(scalar)");
  return record<MulScalarBackward>(mul(a.data(), b), {&a}, loc, [&](MulScalarBackward& n) { n.s = b; });
}

struct NegBackward : Node {
  const char* name() const override { return "NegBackward"; }
  std::vector<Array> backward(const Array& g) override { return {neg(g)}; }
};
Tensor neg(const Tensor& a, const Loc& loc) {
  ProfileScope prof("neg");
  return record<NegBackward>(neg(a.data()), {&a}, loc, [](NegBackward&) {});
}

struct PowBackward : Node {
  Array x;
  double p = 0;
  const char* name() const override { return "PowBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g * pow(x, p - 1.0) * p}; }  // p x^(p-1)
  void release_saved() override { x = Array(); }
};
Tensor pow(const Tensor& a, double exponent, const Loc& loc) {
  ProfileScope prof("pow");
  return record<PowBackward>(pow(a.data(), exponent), {&a}, loc, [&](PowBackward& n) {
    n.x = a.data();
    n.p = exponent;
  });
}

struct ExpBackward : Node {
  Array y;  // exp(x): its own derivative
  const char* name() const override { return "ExpBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g * y}; }
  void release_saved() override { y = Array(); }
};
Tensor exp(const Tensor& a, const Loc& loc) {
  ProfileScope prof("exp");
  Array y = exp(a.data());
  return record<ExpBackward>(y, {&a}, loc, [&](ExpBackward& n) { n.y = y; });
}

struct LogBackward : Node {
  Array x;
  const char* name() const override { return "LogBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g / x}; }
  void release_saved() override { x = Array(); }
};
Tensor log(const Tensor& a, const Loc& loc) {
  ProfileScope prof("log");
  return record<LogBackward>(log(a.data()), {&a}, loc, [&](LogBackward& n) { n.x = a.data(); });
}

struct SqrtBackward : Node {
  Array y;
  const char* name() const override { return "SqrtBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g / (y * 2.0)}; }  // 1 / (2 sqrt(x))
  void release_saved() override { y = Array(); }
};
Tensor sqrt(const Tensor& a, const Loc& loc) {
  ProfileScope prof("sqrt");
  Array y = sqrt(a.data());
  return record<SqrtBackward>(y, {&a}, loc, [&](SqrtBackward& n) { n.y = y; });
}

struct TanhBackward : Node {
  Array y;
  const char* name() const override { return "TanhBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g * rsub(1.0, y * y)}; }  // 1 - tanh^2
  void release_saved() override { y = Array(); }
};
Tensor tanh(const Tensor& a, const Loc& loc) {
  ProfileScope prof("tanh");
  Array y = tanh(a.data());
  return record<TanhBackward>(y, {&a}, loc, [&](TanhBackward& n) { n.y = y; });
}

struct ReluBackward : Node {
  Array y;
  const char* name() const override { return "ReluBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g * sign(y)}; }  // 1 where y > 0, else 0
  void release_saved() override { y = Array(); }
};
Tensor relu(const Tensor& a, const Loc& loc) {
  ProfileScope prof("relu");
  Array y = relu(a.data());
  return record<ReluBackward>(y, {&a}, loc, [&](ReluBackward& n) { n.y = y; });
}

struct GeluBackward : Node {
  Array x;
  const char* name() const override { return "GeluBackward"; }
  std::vector<Array> backward(const Array& g) override { return {gelu_backward(x, g)}; }
  void release_saved() override { x = Array(); }
};
Tensor gelu(const Tensor& a, const Loc& loc) {
  ProfileScope prof("gelu");
  return record<GeluBackward>(gelu(a.data()), {&a}, loc, [&](GeluBackward& n) { n.x = a.data(); });
}

}  // namespace qkvlab
