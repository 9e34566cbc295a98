#include "nn/optim.h"

#include <cmath>
#include <sstream>

#include "tensor/format.h"
#include "tensor/ops.h"

namespace qkvlab {

std::vector<ParamGroup> make_param_groups(const Module& model, double weight_decay) {
  ParamGroup decay{"decay", {}, {}, weight_decay}, no_decay{"no_decay", {}, {}, 0.0};
  for (auto& [n, t] : model.named_parameters()) {
    ParamGroup& g = t.ndim() >= 2 ? decay : no_decay;
    g.names.push_back(n);
    g.params.push_back(t);
  }
  std::vector<ParamGroup> out;
  if (!decay.params.empty()) out.push_back(decay);
  if (!no_decay.params.empty()) out.push_back(no_decay);
  return out;
}

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  for (auto& g : groups_) {
    check(g.names.size() == g.params.size(), "optimizer: group ", g.label, " has ", g.names.size(), " names for ",
          g.params.size(), " parameters");
    for (auto& p : g.params) check(p.requires_grad(), "optimizer: a parameter does not require grad");
  }
}

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

std::string Optimizer::describe() const {
  std::ostringstream os;
  os << name() << " lr=" << lr << ":";
  for (size_t i = 0; i < groups_.size(); ++i) {
    int64_t values = 0;
    for (auto& p : groups_[i].params) values += p.numel();
    os << (i ? ", " : " ") << groups_[i].label << " " << groups_[i].params.size() << " tensors ("
       << with_commas(values) << " values, weight_decay " << groups_[i].weight_decay << ")";
  }
  return os.str();
}

Array& Optimizer::buffer(const std::string& kind, const std::string& param, const Tensor& like) {
  std::string key = kind + "." + param;
  for (auto& [k, a] : buffers_)
    if (k == key) return a;
  buffers_.emplace_back(key, Array::zeros(like.shape(), like.dtype()));
  return buffers_.back().second;
}

NamedArrays Optimizer::state() const {
  NamedArrays out(buffers_.begin(), buffers_.end());
  out.emplace_back("step", Array::from_vector(std::vector<int64_t>{step_}, {}));
  return out;
}

void Optimizer::load_state(const NamedArrays& state) {
  std::deque<std::pair<std::string, Array>> bufs;
  bool have_step = false;
  // Every buffer must belong to a parameter of ours, with its shape.
  for (auto& [k, a] : state) {
    if (k == "step") {
      check(a.dtype() == DType::I64 && a.numel() == 1, "optimizer state: 'step' must be one int64");
      step_ = static_cast<int64_t>(a.to_ints()[0]);
      have_step = true;
      continue;
    }
    size_t dot = k.find('.');
    check(dot != std::string::npos, "optimizer state: unexpected entry ", k);
    std::string param = k.substr(dot + 1);
    const Tensor* match = nullptr;
    for (auto& g : groups_)
      for (size_t i = 0; i < g.params.size(); ++i)
        if (g.names[i] == param) match = &g.params[i];
    check(match != nullptr, "optimizer state: ", k, " names no parameter of this model");
    check(a.shape() == match->shape(), "optimizer state: ", k, ": expected shape ", match->shape(),
          ", got ", a.shape());
    bufs.emplace_back(k, a.to(match->dtype()).clone());
  }
  check(have_step, "optimizer state: missing 'step'");
  buffers_ = std::move(bufs);
}

SGD::SGD(std::vector<ParamGroup> groups, double lr_, double momentum_)
    : Optimizer(std::move(groups)), momentum(momentum_) {
  lr = lr_;
}

void SGD::step() {
  ++step_;
  for (auto& group : groups_)
    for (size_t i = 0; i < group.params.size(); ++i) {
      const Tensor& p = group.params[i];
      if (!p.grad().defined()) continue;
      Array& buf = buffer("momentum", group.names[i], p);
      dispatch_float(p.dtype(), "SGD", [&](auto z) {
        using T = decltype(z);
        Array g = p.grad().contiguous();
        T* w = p.data().data<T>();
        const T* gr = g.data<T>();
        T* b = buf.data<T>();
        const T lr_ = T(lr), wd = T(group.weight_decay), mom = T(momentum);
        for (int64_t j = 0, n = p.numel(); j < n; ++j) {
          T gj = gr[j] + wd * w[j];
          if (mom != T(0)) {
            b[j] = mom * b[j] + gj;  // the buffer starts at zero, so the first step uses g itself
            gj = b[j];
          }
          w[j] -= lr_ * gj;
        }
      });
    }
}

AdamW::AdamW(std::vector<ParamGroup> groups, double lr_, double b1, double b2, double e)
    : Optimizer(std::move(groups)), beta1(b1), beta2(b2), eps(e) {
  lr = lr_;
}

void AdamW::step() {
  ++step_;
  const double bc1 = 1.0 - std::pow(beta1, double(step_));  // bias corrections: m and v start at zero
  const double bc2 = 1.0 - std::pow(beta2, double(step_));
  for (auto& group : groups_)
    for (size_t i = 0; i < group.params.size(); ++i) {
      const Tensor& p = group.params[i];
      if (!p.grad().defined()) continue;
      Array& m = buffer("exp_avg", group.names[i], p);
      Array& v = buffer("exp_avg_sq", group.names[i], p);
      dispatch_float(p.dtype(), "AdamW", [&](auto z) {
        using T = decltype(z);
        Array g = p.grad().contiguous();
        // __restrict: the four arrays never overlap; without it the compiler kept the loop scalar (a sqrt and a
        // division per element one after the other: 2.5 ns a parameter).
        T* __restrict w = p.data().data<T>();
        const T* __restrict gr = g.data<T>();
        T* __restrict mp = m.data<T>();
        T* __restrict vp = v.data<T>();
        const T b1 = T(beta1), b2 = T(beta2), step_size = T(lr / bc1), decay = T(1.0 - lr * group.weight_decay);
        const T rbc2 = T(1.0 / std::sqrt(bc2)), e = T(eps);
        for (int64_t j = 0, n = p.numel(); j < n; ++j) {
          w[j] *= decay;  // decoupled weight decay
          mp[j] = b1 * mp[j] + (T(1) - b1) * gr[j];
          vp[j] = b2 * vp[j] + (T(1) - b2) * gr[j] * gr[j];
          w[j] -= step_size * mp[j] / (std::sqrt(vp[j]) * rbc2 + e);
        }
      });
    }
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  check(max_norm > 0, "clip_grad_norm: max_norm must be positive, got ", max_norm);
  double total = 0.0;
  for (auto& p : params)
    if (p.grad().defined()) total += sum(mul(p.grad(), p.grad())).item();
  total = std::sqrt(total);
  if (total > max_norm) {
    double scale = max_norm / (total + 1e-6);
    for (auto& p : params)
      if (p.grad().defined()) {
        Array g = p.grad();
        mul_(g, scale);
      }
  }
  return total;
}

WarmupCosineLR::WarmupCosineLR(double b, int64_t w, int64_t t, double f) : base(b), floor(f), warmup(w), total(t) {
  check(w >= 0 && t > 0 && w <= t, "WarmupCosineLR: expected 0 <= warmup <= total, total > 0; got warmup=", w,
        " total=", t);
}

double WarmupCosineLR::lr(int64_t step) const {
  if (step < warmup) return base * double(step + 1) / double(warmup);
  if (step >= total) return floor;
  double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
  return floor + (base - floor) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
}

StepLR::StepLR(double b, int64_t s, double g) : base(b), gamma(g), step_size(s) {
  check(s > 0, "StepLR: step_size must be positive, got ", s);
}

double StepLR::lr(int64_t step) const { return base * std::pow(gamma, double(step / step_size)); }

}  // namespace qkvlab
