#include "autograd/tensor.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace qkvlab {

namespace {
std::atomic<int64_t> g_live_tensors{0};
thread_local bool t_grad_enabled = true;
bool anomaly_from_env() {
  const char* v = std::getenv("QKVLAB_ANOMALY");
  return v && *v && std::strcmp(v, "0") != 0;
}
thread_local bool t_anomaly = anomaly_from_env();
}  // namespace

TensorImpl::TensorImpl() { g_live_tensors++; }
TensorImpl::~TensorImpl() { g_live_tensors--; }

Tensor::Tensor(Array data, bool requires_grad) : impl_(std::make_shared<TensorImpl>()) {
  impl_->data = std::move(data);
  if (requires_grad) requires_grad_(true);
}

Tensor Tensor::from_impl(std::shared_ptr<TensorImpl> impl) {
  Tensor t;
  t.impl_ = std::move(impl);
  return t;
}

int64_t Tensor::live_count() { return g_live_tensors.load(); }

const Array& Tensor::data() const {
  check(defined(), "tensor: the tensor is undefined");
  return impl_->data;
}

bool Tensor::requires_grad() const { return defined() && impl_->requires_grad; }

Tensor& Tensor::requires_grad_(bool on) {
  check(defined(), "requires_grad_: the tensor is undefined");
  check(is_leaf(), "requires_grad_: only a leaf tensor can change requires_grad; use detach() first");
  if (on) check(impl_->data.dtype() != DType::I64, "requires_grad_: an int64 tensor cannot require grad");
  impl_->requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const { return defined() && impl_->grad_fn == nullptr; }

const Array& Tensor::grad() const {
  check(defined(), "grad: the tensor is undefined");
  return impl_->grad;
}

void Tensor::set_grad(Array g) {
  check(defined(), "set_grad: the tensor is undefined");
  check(!g.defined() || g.shape() == shape(), "set_grad: gradient of shape ", g.shape(),
        " for a tensor of shape ", shape());
  check(!g.defined() || g.dtype() == dtype(), "set_grad: gradient is ", dtype_name(g.dtype()), ", the tensor is ",
        dtype_name(dtype()));
  impl_->grad = std::move(g);
}

void Tensor::zero_grad() {
  if (defined()) impl_->grad = Array();
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  check(defined(), "grad_fn: the tensor is undefined");
  return impl_->grad_fn;
}

void Tensor::retain_grad() {
  check(requires_grad(), "retain_grad: the tensor does not require grad");
  impl_->retains_grad = true;
}

void Tensor::register_hook(GradHook hook) {
  check(requires_grad(), "register_hook: the tensor does not require grad, so no gradient will reach the hook");
  impl_->hooks.push_back(std::move(hook));
}

const std::string& Tensor::name() const {
  check(defined(), "name: the tensor is undefined");
  return impl_->name;
}

Tensor& Tensor::set_name(std::string name) {
  check(defined(), "set_name: the tensor is undefined");
  impl_->name = std::move(name);
  return *this;
}

Tensor Tensor::detach() const { return Tensor(data(), false); }

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = prev_; }
EnableGradGuard::EnableGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = true; }
EnableGradGuard::~EnableGradGuard() { t_grad_enabled = prev_; }

bool anomaly_enabled() { return t_anomaly; }
AnomalyGuard::AnomalyGuard(bool on) : prev_(t_anomaly) { t_anomaly = on; }
AnomalyGuard::~AnomalyGuard() { t_anomaly = prev_; }

}  // namespace qkvlab
