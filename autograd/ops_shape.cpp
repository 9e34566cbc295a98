// Shape ops: views in forward (no copies), and the matching rearrangement of the gradient in backward.
#include <numeric>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace qkvlab {

struct ExpandBackward : Node {  // broadcasting made explicit: one value fed many outputs, so gradients add up
  const char* name() const override { return "ExpandBackward"; }
  std::vector<Array> backward(const Array& g) override { return {sum_to(g, input_shapes[0])}; }
};
Tensor expand(const Tensor& a, const Shape& shape, const Loc& loc) {
  ProfileScope prof("expand");
  return record<ExpandBackward>(a.data().expand(shape), {&a}, loc, [](ExpandBackward&) {});
}

struct ReshapeBackward : Node {
  const char* name() const override { return "ReshapeBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g.reshape(input_shapes[0])}; }
};
Tensor reshape(const Tensor& a, const Shape& shape, const Loc& loc) {
  ProfileScope prof("reshape");
  return record<ReshapeBackward>(a.data().reshape(shape), {&a}, loc, [](ReshapeBackward&) {});
}

struct PermuteBackward : Node {
  std::vector<int64_t> inverse;
  const char* name() const override { return "PermuteBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g.permute(inverse)}; }
};
Tensor permute(const Tensor& a, const std::vector<int64_t>& dims, const Loc& loc) {
  ProfileScope prof("permute");
  Array out = a.data().permute(dims);  // validates dims
  return record<PermuteBackward>(out, {&a}, loc, [&](PermuteBackward& n) {
    n.inverse.resize(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) n.inverse[wrap_dim(dims[i], a.ndim(), "permute")] = int64_t(i);
  });
}

Tensor transpose(const Tensor& a, int64_t d0, int64_t d1, const Loc& loc) {
  ProfileScope prof("transpose");
  std::vector<int64_t> dims(a.ndim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(d0, a.ndim(), "transpose")], dims[wrap_dim(d1, a.ndim(), "transpose")]);
  return permute(a, dims, loc);
}

struct SliceBackward : Node {  // the gradient lands in the sliced window; zeros elsewhere
  int64_t dim = 0, start = 0, end = 0, step = 1;
  const char* name() const override { return "SliceBackward"; }
  std::vector<Array> backward(const Array& g) override {
    Array out = Array::zeros(input_shapes[0], g.dtype());
    out.slice(dim, start, end, step).copy_(g);
    return {out};
  }
};
Tensor slice(const Tensor& a, int64_t dim, int64_t start, int64_t end, int64_t step, const Loc& loc) {
  ProfileScope prof("slice");
  Array out = a.data().slice(dim, start, end, step);
  return record<SliceBackward>(out, {&a}, loc, [&](SliceBackward& n) {
    n.dim = wrap_dim(dim, a.ndim(), "slice");
    n.start = start;
    n.end = end;
    n.step = step;
  });
}

Tensor unsqueeze(const Tensor& a, int64_t dim, const Loc& loc) {
  ProfileScope prof("unsqueeze");
  return reshape(a, a.data().unsqueeze(dim).shape(), loc);
}

Tensor squeeze(const Tensor& a, int64_t dim, const Loc& loc) {
  ProfileScope prof("squeeze");
  return reshape(a, a.data().squeeze(dim).shape(), loc);
}

struct ContiguousBackward : Node {
  const char* name() const override { return "ContiguousBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g}; }
};
Tensor contiguous(const Tensor& a, const Loc& loc) {
  ProfileScope prof("contiguous");
  if (a.data().is_contiguous()) return a;
  return record<ContiguousBackward>(a.data().contiguous(), {&a}, loc, [](ContiguousBackward&) {});
}

struct ConcatBackward : Node {  // each input gets its own window of the gradient
  int64_t dim = 0;
  const char* name() const override { return "ConcatBackward"; }
  std::vector<Array> backward(const Array& g) override {
    std::vector<Array> out;
    int64_t at = 0;
    for (const Shape& s : input_shapes) {
      out.push_back(g.narrow(dim, at, s[dim]));
      at += s[dim];
    }
    return out;
  }
};
Tensor concat(const std::vector<Tensor>& parts, int64_t dim, const Loc& loc) {
  ProfileScope prof("concat");
  check(!parts.empty(), "concat: expected at least one tensor");
  std::vector<Array> arrays;
  for (const Tensor& t : parts) arrays.push_back(t.data());
  Array out = concat(arrays, dim);
  std::vector<const Tensor*> inputs;
  for (const Tensor& t : parts) inputs.push_back(&t);
  Tensor result(out);
  if (anomaly_enabled()) check_forward_anomaly("ConcatBackward", out, loc);
  if (!grad_enabled() || !any_requires_grad(inputs)) return result;
  auto node = std::make_shared<ConcatBackward>();
  node->dim = wrap_dim(dim, parts[0].ndim(), "concat");
  attach(node, result, inputs, loc);
  return result;
}

std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim, const Loc& loc) {
  ProfileScope prof("split");
  int64_t d = wrap_dim(dim, a.ndim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    check(s >= 0, "split: negative size ", s);
    total += s;
  }
  check(total == a.size(d), "split: sizes ", sizes, " add up to ", total, ", but dim ", d, " has size ",
        a.size(d));
  std::vector<Tensor> out;
  int64_t at = 0;
  for (int64_t s : sizes) {
    out.push_back(slice(a, d, at, at + s, 1, loc));
    at += s;
  }
  return out;
}

}  // namespace qkvlab
