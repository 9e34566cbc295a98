// Reductions and matmul.
#include "autograd/node.h"
#include "autograd/ops.h"

namespace qkvlab {

namespace {
// The input shape with reduced dims kept as 1: the shape the gradient broadcasts from.
Shape keepdim_shape(const Shape& in, const std::vector<int64_t>& dims) {
  Shape s = in;
  if (dims.empty()) return Shape(in.size(), 1);
  for (int64_t d : dims) s[wrap_dim(d, int64_t(in.size()), "sum")] = 1;
  return s;
}
}  // namespace

struct SumBackward : Node {  // every input element fed the sum once: the gradient is copied back
  std::vector<int64_t> dims;
  const char* name() const override { return "SumBackward"; }
  std::vector<Array> backward(const Array& g) override {
    return {g.reshape(keepdim_shape(input_shapes[0], dims)).expand(input_shapes[0])};
  }
};
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim, const Loc& loc) {
  ProfileScope prof("sum");
  return record<SumBackward>(sum(a.data(), dims, keepdim), {&a}, loc, [&](SumBackward& n) { n.dims = dims; });
}

struct MeanBackward : Node {
  std::vector<int64_t> dims;
  double scale = 1;
  const char* name() const override { return "MeanBackward"; }
  std::vector<Array> backward(const Array& g) override {
    return {mul(g.reshape(keepdim_shape(input_shapes[0], dims)), scale).expand(input_shapes[0])};
  }
};
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim, const Loc& loc) {
  ProfileScope prof("mean");
  Array out = mean(a.data(), dims, keepdim);
  return record<MeanBackward>(out, {&a}, loc, [&](MeanBackward& n) {
    n.dims = dims;
    int64_t reduced = out.numel() == 0 ? 0 : a.numel() / out.numel();
    n.scale = reduced == 0 ? 0.0 : 1.0 / double(reduced);
  });
}

struct MaxBackward : Node {  // only the (first) maximum receives the gradient
  Array index;               // argmax, keepdim, int64
  int64_t dim = 0;
  const char* name() const override { return "MaxBackward"; }
  std::vector<Array> backward(const Array& g) override {
    const Shape& in = input_shapes[0];
    Shape along(in.size(), 1);
    along[dim] = in[dim];
    Array positions = Array::arange(in[dim], g.dtype()).reshape(along);   // 0..n-1 along dim
    Array onehot = eq(positions, index.to(g.dtype()));                     // broadcasts to the input shape
    return {mul(onehot, g.reshape(index.shape()))};
  }
  void release_saved() override { index = Array(); }
};
Tensor max(const Tensor& a, int64_t dim, bool keepdim, const Loc& loc) {
  ProfileScope prof("max");
  int64_t d = wrap_dim(dim, a.ndim(), "max");
  return record<MaxBackward>(max(a.data(), d, keepdim), {&a}, loc, [&](MaxBackward& n) {
    n.index = argmax(a.data(), d, true);
    n.dim = d;
  });
}

struct MatmulBackward : Node {
  Array a, b;  // (..., M, K) and (..., K, N)
  const char* name() const override { return "MatmulBackward"; }
  std::vector<Array> backward(const Array& g) override {  // g: (..., M, N)
    Array ga = needs_grad(0) ? sum_to(matmul(g, b.mT()), input_shapes[0]) : Array();  // g @ b^T
    Array gb;
    if (needs_grad(1) && input_shapes[1].size() == 2 && a.ndim() > 2 && g.is_contiguous() && a.is_contiguous()) {
      // b is a matrix shared by every batch entry (a weight): sum_b a_b^T g_b is one product over all rows,
      // (K, batch*M) @ (batch*M, N), with no (batch, K, N) intermediate to sum afterwards.
      const int64_t K = a.size(-1), N = g.size(-1);
      gb = matmul(a.reshape({-1, K}).mT(), g.reshape({-1, N}));
    } else if (needs_grad(1)) {
      gb = sum_to(matmul(a.mT(), g), input_shapes[1]);  // a^T @ g
    }
    return {ga, gb};
  }
  void release_saved() override { a = b = Array(); }
};
Tensor matmul(const Tensor& a0, const Tensor& b0, const Loc& loc) {
  ProfileScope prof("matmul");
  check(a0.ndim() >= 1 && b0.ndim() >= 1, "matmul: expected tensors with at least 1 dim, got ",
        shape_str(a0.shape()), " @ ", shape_str(b0.shape()));
  check(a0.dtype() == b0.dtype(), "matmul: dtypes differ: ", dtype_name(a0.dtype()), " and ",
        dtype_name(b0.dtype()));
  // 1-D operands as in NumPy: a vector on the left is a row, on the right a column; the extra dim is dropped.
  Tensor a = a0.ndim() == 1 ? unsqueeze(a0, 0, loc) : a0;
  Tensor b = b0.ndim() == 1 ? unsqueeze(b0, 1, loc) : b0;
  Tensor out = record<MatmulBackward>(matmul(a.data(), b.data()), {&a, &b}, loc, [&](MatmulBackward& n) {
    if (b.requires_grad()) n.a = a.data();
    if (a.requires_grad()) n.b = b.data();
  });
  if (a0.ndim() == 1) out = squeeze(out, -2, loc);
  if (b0.ndim() == 1) out = squeeze(out, -1, loc);
  return out;
}

struct LinearBackward : Node {
  Array x, w;  // input (..., in) and weight (out, in)
  const char* name() const override { return "LinearBackward"; }
  std::vector<Array> backward(const Array& g) override {  // g: (..., out)
    const int64_t out_features = g.size(-1), in_features = input_shapes[1][1];
    const Shape& xs = input_shapes[0];
    const int64_t rows = shape_numel(Shape(xs.begin(), xs.end() - 1));  // every dim but the last (may be 0)
    const Array g2 = g.reshape({rows, out_features});                                  // (rows, out)
    Array gx, gw, gb;
    if (needs_grad(0)) gx = matmul(g2, w).reshape(xs);                                  // g @ w: (rows, in)
    if (needs_grad(1)) gw = matmul(g2.mT(), x.reshape({rows, in_features}));           // g^T @ x: (out, in)
    if (needs_grad(2)) gb = sum(g2, {0});                                              // sum over rows: (out)
    return {gx, gw, gb};
  }
  void release_saved() override { x = w = Array(); }
};
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, const Loc& loc) {
  ProfileScope prof("linear");
  Array out = linear(x.data(), w.data(), b.defined() ? b.data() : Array());
  return record<LinearBackward>(out, {&x, &w, &b}, loc, [&](LinearBackward& n) {
    if (w.requires_grad()) n.x = x.data();
    if (x.requires_grad()) n.w = w.data();
  });
}

}  // namespace qkvlab
