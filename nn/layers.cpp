#include "nn/layers.h"

namespace qkvlab {

Linear::Linear(int64_t in, int64_t out, Generator& gen, bool has_bias, double init_std)
    : in_features(in), out_features(out) {
  check(in > 0 && out > 0, "Linear: sizes must be positive, got in=", in, " out=", out);
  weight = Tensor(Array::normal({out, in}, gen, 0.0, init_std));
  register_parameter("weight", weight);
  if (has_bias) {
    bias = Tensor(Array::zeros({out}));
    register_parameter("bias", bias);
  }
}

Tensor Linear::forward(const Tensor& x) const {
  check(x.ndim() >= 1 && x.size(-1) == in_features, "Linear: expected input (..., ", in_features, "), got ",
        x.shape());
  // = add(matmul(x, transpose(weight, 0, 1)), bias): (..., in) @ (in, out) + (out), in one op (autograd/ops.h)
  return linear(x, weight, bias);
}

std::string Linear::extra_repr() const {
  return "in=" + std::to_string(in_features) + ", out=" + std::to_string(out_features) +
         (bias.defined() ? "" : ", bias=false");
}

Embedding::Embedding(int64_t num, int64_t dim, Generator& gen, double init_std, bool has_bias) {
  check(num > 0 && dim > 0, "Embedding: sizes must be positive, got num=", num, " dim=", dim);
  weight = Tensor(Array::normal({num, dim}, gen, 0.0, init_std));
  register_parameter("weight", weight);
  if (has_bias) {
    bias = Tensor(Array::zeros({dim}));
    register_parameter("bias", bias);
  }
}

Tensor Embedding::forward(const Array& ids) const {
  Tensor e = embedding(weight, ids);       // (..., dim)
  return bias.defined() ? add(std::move(e), bias) : e;  // one-hot @ weight + bias (written over e)
}

std::string Embedding::extra_repr() const {
  return "num=" + std::to_string(weight.size(0)) + ", dim=" + std::to_string(weight.size(1)) +
         (bias.defined() ? ", bias=true" : "");
}

LayerNorm::LayerNorm(int64_t dim, double eps_) : eps(eps_) {
  check(dim > 0, "LayerNorm: size must be positive, got ", dim);
  weight = Tensor(Array::ones({dim}));
  bias = Tensor(Array::zeros({dim}));
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}

std::string LayerNorm::extra_repr() const { return "dim=" + std::to_string(weight.size(0)); }

Dropout::Dropout(double p_, Generator& g) : p(p_), gen(&g) {
  check(p >= 0.0 && p < 1.0, "Dropout: p must be in [0, 1), got ", p);
}

MLP::MLP(int64_t d, int64_t hidden, Generator& gen) : fc(d, hidden, gen), proj(hidden, d, gen) {
  register_module("fc", fc);
  register_module("proj", proj);
}

double accuracy(const Tensor& logits, const Array& targets, int64_t ignore_index) {
  Array pred = argmax(logits.data(), -1);
  check(pred.shape() == targets.shape(), "accuracy: targets of shape ", targets.shape(),
        " do not match logits ", logits.shape());
  std::vector<int64_t> p = pred.to_ints(), t = targets.to_ints();
  int64_t hit = 0, count = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (t[i] == ignore_index) continue;
    ++count;
    hit += p[i] == t[i];
  }
  return count ? double(hit) / double(count) : 0.0;
}

}  // namespace qkvlab
