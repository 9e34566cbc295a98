// Layers. Shapes follow PyTorch: Linear stores weight as [out, in] and computes x @ weight^T + bias.
// Weights start as N(0, init_std) (0.02, as in GPT-2) and biases as zeros, drawn from the Generator given; a model
// with init "torch" redraws them afterwards (models/transformer.h, TransformerModel::init_weights).
#pragma once
#include <cstdint>

#include "autograd/ops.h"
#include "nn/module.h"

namespace qkvlab {

struct Linear : Module {
  Tensor weight;  // (out, in)
  Tensor bias;    // (out); undefined when bias = false
  int64_t in_features, out_features;
  Linear(int64_t in, int64_t out, Generator& gen, bool bias = true, double init_std = 0.02);
  Tensor forward(const Tensor& x) const;  // (..., in) -> (..., out)
  Tensor operator()(const Tensor& x) const { return forward(x); }
  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override;
};

// With bias = true it is a Linear(num, dim) applied to one-hot ids (weight = that Linear's weight transposed), as
// the authors' synthetic model reads its digits.
struct Embedding : Module {
  Tensor weight;  // (num, dim)
  Tensor bias;    // (dim); undefined unless bias = true
  Embedding(int64_t num, int64_t dim, Generator& gen, double init_std = 0.02, bool bias = false);
  Tensor forward(const Array& ids) const;  // int64 (...) -> (..., dim)
  Tensor operator()(const Array& ids) const { return forward(ids); }
  std::string type_name() const override { return "Embedding"; }
  std::string extra_repr() const override;
};

struct LayerNorm : Module {
  Tensor weight, bias;  // (dim): ones and zeros
  double eps;
  explicit LayerNorm(int64_t dim, double eps = 1e-5);
  Tensor forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }  // over the last dim
  Tensor operator()(const Tensor& x) const { return forward(x); }
  std::string type_name() const override { return "LayerNorm"; }
  std::string extra_repr() const override;
};

struct Dropout : Module {
  double p;
  Generator* gen;  // the model's generator, so a seed fixes every mask
  Dropout(double p, Generator& gen);
  Tensor forward(const Tensor& x) const { return dropout(x, p, is_training(), *gen); }
  Tensor operator()(const Tensor& x) const { return forward(x); }
  std::string type_name() const override { return "Dropout"; }
  std::string extra_repr() const override { return "p=" + std::to_string(p); }
};

// The transformer's feed-forward block: d -> hidden -> d with exact GELU in between.
struct MLP : Module {
  Linear fc, proj;
  MLP(int64_t d, int64_t hidden, Generator& gen);
  // proj(gelu(fc(x))): (B,T,d) -> (B,T,hidden) -> (B,T,d). gelu_linear is proj(gelu(.)) as one op that keeps
  // less for backward (autograd/ops.h); the result and the gradients are the same, bit for bit.
  Tensor forward(const Tensor& x) const { return gelu_linear(fc(x), proj.weight, proj.bias); }
  Tensor operator()(const Tensor& x) const { return forward(x); }
  std::string type_name() const override { return "MLP"; }
};

// Fraction of positions whose argmax matches the target (positions with target == ignore_index do not count).
double accuracy(const Tensor& logits, const Array& targets, int64_t ignore_index = -100);

}  // namespace qkvlab
