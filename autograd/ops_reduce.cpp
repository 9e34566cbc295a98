// Reductions: sum, mean, max. (Matmul and linear, forward and backward: autograd/ops_matmul.cpp.)
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

}  // namespace qkvlab
