// Optimizers, gradient clipping and learning-rate schedules.
//
// Parameters come in groups; make_param_groups() puts matrices (weights, embeddings) in a group with weight decay
// and vectors (biases, LayerNorm gains) in one without, the usual PyTorch/GPT convention. describe() says how many
// tensors each group holds. Each optimizer's update is one readable loop over the elements of each parameter.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "nn/module.h"

namespace qkvlab {

struct ParamGroup {
  std::string label;  // "decay" / "no_decay"
  std::vector<std::string> names;
  std::vector<Tensor> params;
  double weight_decay = 0.0;
};

// Matrices (ndim >= 2) get `weight_decay`, everything else none.
std::vector<ParamGroup> make_param_groups(const Module& model, double weight_decay);

class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;
  virtual void step() = 0;      // uses each parameter's .grad(); parameters without a gradient are skipped
  virtual std::string name() const = 0;
  void zero_grad();
  double lr = 1e-3;
  int64_t steps() const { return step_; }
  std::string describe() const;  // "AdamW lr=0.001: decay 10 tensors (52,224 values), no_decay 14 tensors (1,536)"
  const std::vector<ParamGroup>& groups() const { return groups_; }

  // Optimizer state as named arrays ("exp_avg.blocks.0.attn.q.weight", "step"), for optimizer.safetensors.
  virtual NamedArrays state() const;
  virtual void load_state(const NamedArrays& state);

 protected:
  std::vector<ParamGroup> groups_;
  int64_t step_ = 0;
  // Per-parameter buffers by kind ("momentum", "exp_avg", ...), created lazily as zeros like the parameter.
  Array& buffer(const std::string& kind, const std::string& param, const Tensor& like);
  std::deque<std::pair<std::string, Array>> buffers_;  // a deque: references from buffer() stay valid
};

// SGD with momentum and (coupled, L2) weight decay, as torch.optim.SGD:
//   g = grad + wd * p;  buf = momentum * buf + g;  p -= lr * buf
class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamGroup> groups, double lr, double momentum = 0.0);
  void step() override;
  std::string name() const override { return "SGD"; }
  double momentum;
};

// AdamW (Loshchilov & Hutter): decoupled weight decay and bias correction, as torch.optim.AdamW:
//   p -= lr * wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);
  void step() override;
  std::string name() const override { return "AdamW"; }
  double beta1, beta2, eps;
};

// Scales all gradients so their joint L2 norm is at most max_norm; returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// Learning-rate schedules: lr(step) for step = 0, 1, 2, ...
struct LRSchedule {
  virtual ~LRSchedule() = default;
  virtual double lr(int64_t step) const = 0;
};
struct ConstantLR : LRSchedule {
  double base;
  explicit ConstantLR(double base) : base(base) {}
  double lr(int64_t) const override { return base; }
};
// Linear warmup from 0 to base over `warmup` steps, then cosine decay to `floor` at `total` steps (and after).
struct WarmupCosineLR : LRSchedule {
  double base, floor;
  int64_t warmup, total;
  WarmupCosineLR(double base, int64_t warmup, int64_t total, double floor = 0.0);
  double lr(int64_t step) const override;
};
// base * gamma^(step / step_size)
struct StepLR : LRSchedule {
  double base, gamma;
  int64_t step_size;
  StepLR(double base, int64_t step_size, double gamma);
  double lr(int64_t step) const override;
};

}  // namespace qkvlab
