// Neural-network ops with fused forward and backward kernels (tensor/ops.h): embedding, softmax,
// scaled_causal_softmax, log_softmax, cross-entropy, layer norm, dropout, masked_fill, where.
#include "autograd/node.h"
#include "autograd/ops.h"

namespace qkvlab {

struct EmbeddingBackward : Node {  // rows were gathered, so gradients scatter-add back (ids may repeat)
  Array ids;
  const char* name() const override { return "EmbeddingBackward"; }
  std::vector<Array> backward(const Array& g) override {
    Array dw = Array::zeros(input_shapes[0], g.dtype());
    embedding_backward_(dw, ids, g);
    return {dw};
  }
  void release_saved() override { ids = Array(); }
};
Tensor embedding(const Tensor& weight, const Array& ids, const Loc& loc) {
  ProfileScope prof("embedding");
  return record<EmbeddingBackward>(embedding(weight.data(), ids), {&weight}, loc,
                                   [&](EmbeddingBackward& n) { n.ids = ids; });
}

struct SoftmaxBackward : Node {
  Array y;
  int64_t dim = 0;
  const char* name() const override { return "SoftmaxBackward"; }
  std::vector<Array> backward(const Array& g) override { return {softmax_backward(y, g, dim)}; }
  void release_saved() override { y = Array(); }
};
Tensor softmax(const Tensor& a, int64_t dim, const Loc& loc) {
  ProfileScope prof("softmax");
  Array y = softmax(a.data(), dim);
  return record<SoftmaxBackward>(y, {&a}, loc, [&](SoftmaxBackward& n) {
    n.y = y;
    n.dim = dim;
  });
}

// Scale, causal mask and softmax in one op (tensor/ops.h): the node keeps only the probabilities p.
struct ScaledCausalSoftmaxBackward : Node {
  Array p;
  double scale = 1.0;
  bool causal = false;
  const char* name() const override { return "ScaledCausalSoftmaxBackward"; }
  std::vector<Array> backward(const Array& g) override { return {scaled_causal_softmax_backward(p, g, scale, causal)}; }
  void release_saved() override { p = Array(); }
};
Tensor scaled_causal_softmax(const Tensor& x, double scale, bool causal, const Loc& loc) {
  ProfileScope prof("scaled_causal_softmax");
  Array p = scaled_causal_softmax(x.data(), scale, causal);
  return record<ScaledCausalSoftmaxBackward>(p, {&x}, loc, [&](ScaledCausalSoftmaxBackward& n) {
    n.p = p;
    n.scale = scale;
    n.causal = causal;
  });
}

struct LogSoftmaxBackward : Node {
  Array y;
  int64_t dim = 0;
  const char* name() const override { return "LogSoftmaxBackward"; }
  std::vector<Array> backward(const Array& g) override { return {log_softmax_backward(y, g, dim)}; }
  void release_saved() override { y = Array(); }
};
Tensor log_softmax(const Tensor& a, int64_t dim, const Loc& loc) {
  ProfileScope prof("log_softmax");
  Array y = log_softmax(a.data(), dim);
  return record<LogSoftmaxBackward>(y, {&a}, loc, [&](LogSoftmaxBackward& n) {
    n.y = y;
    n.dim = dim;
  });
}

struct CrossEntropyBackward : Node {
  Array logits, targets, lse;  // logits as (N, C), targets (N)
  int64_t count = 0, ignore_index = -100;
  const char* name() const override { return "CrossEntropyBackward"; }
  std::vector<Array> backward(const Array& g) override {
    Array d = cross_entropy_backward(logits, targets, lse, count, g.item(), ignore_index);
    return {d.reshape(input_shapes[0])};
  }
  void release_saved() override { logits = targets = lse = Array(); }
};
Tensor cross_entropy(const Tensor& logits, const Array& targets, int64_t ignore_index, const Loc& loc) {
  ProfileScope prof("cross_entropy");
  check(logits.ndim() >= 1, "cross_entropy: logits need a class dim, got shape ", logits.shape());
  Shape batch(logits.shape().begin(), logits.shape().end() - 1);
  check(targets.shape() == batch, "cross_entropy: targets of shape ", targets.shape(),
        " do not match logits ", logits.shape(), " (expected ", batch, ")");
  int64_t C = logits.size(-1);
  Array l2 = logits.data().reshape({-1, C});
  Array t1 = targets.reshape({-1});
  CrossEntropyOut r = cross_entropy(l2, t1, ignore_index);
  return record<CrossEntropyBackward>(r.loss, {&logits}, loc, [&](CrossEntropyBackward& n) {
    n.logits = l2;
    n.targets = t1;
    n.lse = r.lse;
    n.count = r.count;
    n.ignore_index = ignore_index;
  });
}

struct LayerNormBackward : Node {
  Array x, mean, rstd, weight;
  bool has_bias = false;
  const char* name() const override { return "LayerNormBackward"; }
  std::vector<Array> backward(const Array& g) override {
    LayerNormGrads r = layer_norm_backward(g, x, mean, rstd, weight, has_bias);
    return {r.dx, r.dweight, r.dbias};
  }
  void release_saved() override { x = mean = rstd = weight = Array(); }
};
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Loc& loc) {
  ProfileScope prof("layer_norm");
  Array w = weight.defined() ? weight.data() : Array();
  Array b = bias.defined() ? bias.data() : Array();
  LayerNormOut r = layer_norm(x.data(), w, b, eps);
  return record<LayerNormBackward>(r.y, {&x, &weight, &bias}, loc, [&](LayerNormBackward& n) {
    n.x = x.data();
    n.mean = r.mean;
    n.rstd = r.rstd;
    n.weight = w;
    n.has_bias = b.defined();
  });
}

struct DropoutBackward : Node {
  Array mask;  // 0 or 1/(1-p)
  const char* name() const override { return "DropoutBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g * mask}; }
  void release_saved() override { mask = Array(); }
};
Tensor dropout(const Tensor& a, double p, bool training, Generator& gen, const Loc& loc) {
  ProfileScope prof("dropout");
  check(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  if (!training || p == 0.0) return a;
  Array mask = dropout_mask(a.shape(), p, gen, a.dtype());
  return record<DropoutBackward>(mul(a.data(), mask), {&a}, loc, [&](DropoutBackward& n) { n.mask = mask; });
}

struct MaskedFillBackward : Node {
  Array mask;
  const char* name() const override { return "MaskedFillBackward"; }
  std::vector<Array> backward(const Array& g) override { return {masked_fill(g, mask, 0.0)}; }
  void release_saved() override { mask = Array(); }
};
Tensor masked_fill(const Tensor& a, const Array& mask, double value, const Loc& loc) {
  ProfileScope prof("masked_fill");
  return record<MaskedFillBackward>(masked_fill(a.data(), mask, value), {&a}, loc,
                                    [&](MaskedFillBackward& n) { n.mask = mask; });
}

struct WhereBackward : Node {
  Array cond;
  const char* name() const override { return "WhereBackward"; }
  std::vector<Array> backward(const Array& g) override {
    Array zero = Array::zeros({}, g.dtype());
    Array ga = needs_grad(0) ? sum_to(where(cond, g, zero), input_shapes[0]) : Array();
    Array gb = needs_grad(1) ? sum_to(where(cond, zero, g), input_shapes[1]) : Array();
    return {ga, gb};
  }
  void release_saved() override { cond = Array(); }
};
Tensor where(const Array& cond, const Tensor& a, const Tensor& b, const Loc& loc) {
  ProfileScope prof("where");
  return record<WhereBackward>(where(cond, a.data(), b.data()), {&a, &b}, loc,
                               [&](WhereBackward& n) { n.cond = cond; });
}

}  // namespace qkvlab
