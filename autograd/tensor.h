// Tensor: an Array plus the history needed to differentiate it (reverse mode).
//
//   Tensor w = Tensor(Array::normal({3, 3}, gen), /*requires_grad=*/true);
//   Tensor y = sum(matmul(x, w));      // each op records a Node (see node.h) that knows its backward
//   y.backward();                      // the engine (engine.cpp) walks the Nodes in reverse order
//   w.grad();                          // dy/dw, accumulated into the leaf
//
// A Tensor is a cheap handle (a shared_ptr); copies share data, grad and history, as in PyTorch.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/array.h"

namespace qkvlab {

struct Node;

// A hook sees the gradient flowing into a tensor and may return a replacement (or an undefined Array to keep it).
using GradHook = std::function<Array(const Array& grad)>;

struct TensorImpl {
  Array data;
  Array grad;                            // accumulated gradient: leaves, and non-leaves after retain_grad()
  bool requires_grad = false;
  bool retains_grad = false;
  std::shared_ptr<Node> grad_fn;         // the op that made this tensor; null for leaves
  std::weak_ptr<Node> grad_accumulator;  // leaves: the AccumulateGrad node that graphs point at
  std::vector<GradHook> hooks;
  std::string name;                      // shown by print_graph / to_dot (parameters get their dotted names)

  TensorImpl();
  ~TensorImpl();
  TensorImpl(const TensorImpl&) = delete;
  TensorImpl& operator=(const TensorImpl&) = delete;
};

class Tensor {
 public:
  Tensor() = default;  // undefined
  explicit Tensor(Array data, bool requires_grad = false);
  static Tensor from_impl(std::shared_ptr<TensorImpl> impl);

  bool defined() const { return impl_ != nullptr; }
  const Array& data() const;   // the values (an Array view; writing into it bypasses autograd)
  const Shape& shape() const { return data().shape(); }
  int64_t size(int64_t dim) const { return data().size(dim); }
  int64_t ndim() const { return data().ndim(); }
  int64_t numel() const { return data().numel(); }
  DType dtype() const { return data().dtype(); }
  double item() const { return data().item(); }

  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);   // only on leaves
  bool is_leaf() const;                     // no grad_fn: made by the user, not by an op
  const Array& grad() const;                // undefined until a backward reaches this tensor
  void set_grad(Array g);
  void zero_grad();                         // drops the gradient (the next backward writes a fresh one)
  const std::shared_ptr<Node>& grad_fn() const;
  void retain_grad();                       // keep .grad() on a non-leaf too
  void register_hook(GradHook hook);
  const std::string& name() const;
  Tensor& set_name(std::string name);

  // Reverse-mode: d(this)/d(leaves). `grad` defaults to 1 for a one-element tensor.
  // The graph's saved tensors are freed afterwards unless retain_graph.
  void backward(const Array& grad = Array(), bool retain_graph = false) const;
  Tensor detach() const;                    // same data, no history, requires_grad false

  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }
  static int64_t live_count();              // TensorImpls alive now (tests use it to find leaks)

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// ---- modes (thread-local) ----
bool grad_enabled();
struct NoGradGuard {  // ops inside record no history: for evaluation and optimizer updates
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;
 private:
  bool prev_;
};

struct EnableGradGuard {  // the opposite: record even inside a NoGradGuard (checkpoint's recomputation)
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;
 private:
  bool prev_;
};

// Anomaly mode: every forward output and every backward gradient is checked for NaN/Inf; the first one stops
// with an Error naming the op and where it was created. Also on when QKVLAB_ANOMALY=1.
bool anomaly_enabled();
struct AnomalyGuard {
  explicit AnomalyGuard(bool on = true);
  ~AnomalyGuard();
  AnomalyGuard(const AnomalyGuard&) = delete;
  AnomalyGuard& operator=(const AnomalyGuard&) = delete;
 private:
  bool prev_;
};

}  // namespace qkvlab
