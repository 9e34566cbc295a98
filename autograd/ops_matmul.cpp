// Matmul, linear and gelu_linear, each forward beside its backward. The kernels they call (tensor/ops_matmul.cpp
// and, under it, the blocked GEMM in tensor/gemm.cpp) compute values only; the gradients are products too:
//   C = A @ B           dA = dC @ B^T          dB = A^T @ dC           (summed over broadcast batch dims)
//   y = x @ W^T + b     dx = dy @ W            dW = dy^T @ x           db = dy summed over rows
// and gelu_linear, linear on gelu(h), which keeps h and makes gelu(h) again in backward.
#include "autograd/node.h"
#include "autograd/ops.h"

namespace qkvlab {

struct MatmulBackward : Node {
  Array a, b;  // (..., M, K) and (..., K, N)
  const char* name() const override { return "MatmulBackward"; }
  std::vector<Array> backward(const Array& g) override {  // g: (..., M, N)
    // A product of the operand's own shape is its gradient already (sum_to would copy it); a broadcast operand's
    // is summed over the batch dims it was broadcast along.
    auto reduce_to = [](Array x, const Shape& shape) { return x.shape() == shape ? x : sum_to(x, shape); };
    Array ga = needs_grad(0) ? reduce_to(matmul(g, b.mT()), input_shapes[0]) : Array();  // g @ b^T
    Array gb;
    if (needs_grad(1) && input_shapes[1].size() == 2 && a.ndim() > 2 && g.is_contiguous() && a.is_contiguous()) {
      // b is a matrix shared by every batch entry (a weight): sum_b a_b^T g_b is one product over all rows,
      // (K, batch*M) @ (batch*M, N), with no (batch, K, N) intermediate to sum afterwards.
      const int64_t K = a.size(-1), N = g.size(-1);
      gb = matmul(a.reshape({-1, K}).mT(), g.reshape({-1, N}));
    } else if (needs_grad(1)) {
      gb = reduce_to(matmul(a.mT(), g), input_shapes[1]);  // a^T @ g
    }
    return {ga, gb};
  }
  void release_saved() override { a = b = Array(); }
};
Tensor matmul(const Tensor& a0, const Tensor& b0, const Loc& loc) {
  ProfileScope prof("matmul");
  check(a0.ndim() >= 1 && b0.ndim() >= 1, "matmul: expected tensors with at least 1 dim, got ",
        a0.shape(), " @ ", b0.shape());
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
    // g @ w: (rows, in);  g^T @ x: (out, in);  g summed over rows: (out). Three products (tensor/ops.h), in
    // blocks of rows.
    const LinearGrads d = linear_backward(g2, needs_grad(1) ? x.reshape({rows, in_features}) : Array(), w, Array(),
                                          needs_grad(0), needs_grad(1), needs_grad(2));
    return {needs_grad(0) ? d.dx.reshape(xs) : Array(), d.dw, d.db};
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

namespace {
int64_t g_keep_bytes = int64_t{4} << 20;
}
int64_t keep_for_backward_bytes() { return g_keep_bytes; }
void set_keep_for_backward_bytes(int64_t bytes) {
  check(bytes >= 0, "set_keep_for_backward_bytes: expected a byte count >= 0, got ", bytes);
  g_keep_bytes = bytes;
}

// linear(gelu(h), w, b), the second layer of an MLP on its hidden activation, as one op. What it keeps for
// backward depends on h's size (keep_for_backward_bytes):
// - small h: gelu(h), which dW needs, and GELU's slope gelu'(h), which dh needs, both computed in forward from one
//   Phi(h) (gelu_and_slope); backward runs no GELU at all, and dh = (dy @ w) * slope is one product that
//   multiplies by the slope as it stores (matmul_scaled).
// - large h: only h, instead of gelu(h) and the slope both; backward makes gelu(h) and the slope again from h in
//   one pass (gelu_and_backward_), so it costs no extra pass over h.
// The values and gradients are those of the two ops, bit for bit (tests/autograd/test_gelu_linear.cpp).
//   dact = dy @ w          dh = dact * gelu'(h)          dW = dy^T @ gelu(h)          db = dy summed over rows
struct GeluLinearBackward : Node {
  Array h, w;        // the pre-activation (..., in) and the weight (out, in)
  Array act, slope;  // or, for a small h, gelu(h) and gelu'(h) instead of h
  const char* name() const override { return "GeluLinearBackward"; }
  std::vector<Array> backward(const Array& g) override {  // g: (..., out)
    const int64_t out_features = g.size(-1), in_features = input_shapes[1][1];
    const Shape& hs = input_shapes[0];
    const int64_t rows = shape_numel(Shape(hs.begin(), hs.end() - 1));
    const Array g2 = g.reshape({rows, out_features});
    Array act = this->act, gh;
    if (slope.defined() || !needs_grad(0)) {
      // gelu(h) and its slope kept (or no dh wanted): the three products of linear_backward, dh = (dy @ w) *
      // gelu'(h) multiplied as it is stored (in blocks of rows, as LinearBackward)
      if (needs_grad(1) && !act.defined()) act = gelu(h);
      const LinearGrads d = linear_backward(g2, needs_grad(1) ? act.reshape({rows, in_features}) : Array(), w,
                                            slope.defined() ? slope.reshape({rows, in_features}) : Array(),
                                            needs_grad(0), needs_grad(1), needs_grad(2));
      return {needs_grad(0) ? d.dx.reshape(hs) : Array(), d.dw, d.db};
    }
    // h kept instead (a large h) and dh wanted: d gelu(h), made into dh in place with gelu(h) made again
    gh = matmul(g2, w).reshape(hs);
    if (last_run && h.storage().use_count() == 1) {
      // h is this node's alone and is released after this call: gelu(h) overwrites it rather than taking a
      // buffer of its own, which would add h's size to backward's peak (8 MB a block for `small`)
      gelu_and_backward_inplace_(h, gh);
      act = h;
    } else {
      act = gelu_and_backward_(h, gh);
    }
    const LinearGrads d = linear_backward(g2, needs_grad(1) ? act.reshape({rows, in_features}) : Array(), Array(),
                                          Array(), false, needs_grad(1), needs_grad(2));
    return {gh, d.dw, d.db};
  }
  void release_saved() override { h = w = act = slope = Array(); }
};
Tensor gelu_linear(const Tensor& h, const Tensor& w, const Tensor& b, const Loc& loc) {
  ProfileScope prof("gelu_linear");
  const Array& hd = h.data();
  const bool recording = grad_enabled() && (h.requires_grad() || w.requires_grad() || b.requires_grad());
  const bool keep = recording && hd.numel() * int64_t(dtype_size(hd.dtype())) <= g_keep_bytes;
  Array slope;
  Array act = keep && h.requires_grad() ? gelu_and_slope(hd, slope) : gelu(hd);
  Array out = linear(act, w.data(), b.defined() ? b.data() : Array());
  return record<GeluLinearBackward>(out, {&h, &w, &b}, loc, [&](GeluLinearBackward& n) {
    if (keep) {
      if (w.requires_grad()) n.act = act;
      n.slope = slope;  // undefined unless h needs a gradient
    } else if (h.requires_grad() || w.requires_grad()) {
      n.h = hd;
    }
    if (h.requires_grad()) n.w = w.data();
  });
}

}  // namespace qkvlab
