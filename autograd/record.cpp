// Recording the graph during the forward pass: record<> (autograd/node.h) calls attach(), which links the new
// node to the nodes of its inputs (edge_to) and to the tensor it produced. Also how a long graph is freed.
#include <atomic>

#include "autograd/diagnostics.h"
#include "autograd/node.h"

namespace qkvlab {

namespace {
std::atomic<uint64_t> g_sequence{0};  // creation order of nodes (Node::sequence)
}  // namespace

Node::~Node() {
  // Destroying a long chain recursively (each node's shared_ptr freeing the next) would overflow the stack.
  // Instead, unlink children we hold the last reference to and free them from a flat worklist.
  std::vector<std::shared_ptr<Node>> stack;
  for (auto& e : next)
    if (e) stack.push_back(std::move(e));
  next.clear();
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    if (n.use_count() == 1) {
      for (auto& e : n->next)
        if (e) stack.push_back(std::move(e));
      n->next.clear();
    }
  }
}

std::shared_ptr<Node> edge_to(const Tensor& input) {
  if (!input.requires_grad()) return nullptr;
  const auto& impl = input.impl();
  if (impl->grad_fn) return impl->grad_fn;
  std::shared_ptr<Node> acc = impl->grad_accumulator.lock();
  if (!acc) {
    auto a = std::make_shared<AccumulateGrad>();
    a->leaf = impl;
    a->output = impl;
    a->output_shape = impl->data.shape();
    a->dtype = impl->data.dtype();
    a->sequence = g_sequence++;
    impl->grad_accumulator = a;
    acc = a;
  }
  return acc;
}

bool any_requires_grad(const std::vector<const Tensor*>& inputs) {
  for (const Tensor* t : inputs)
    if (t && t->requires_grad()) return true;
  return false;
}

void attach(const std::shared_ptr<Node>& node, Tensor& out, const std::vector<const Tensor*>& inputs,
            const SourceLocation& loc) {
  for (const Tensor* t : inputs) {
    bool present = t && t->defined();  // optional inputs (a LayerNorm without bias) may be undefined
    node->next.push_back(present ? edge_to(*t) : nullptr);
    node->input_shapes.push_back(present ? t->shape() : Shape{});
  }
  node->output_shape = out.shape();
  node->dtype = out.dtype();
  node->sequence = g_sequence++;
  node->created_at = loc;
  if (anomaly_enabled()) node->backtrace = capture_backtrace();
  out.impl()->requires_grad = true;
  out.impl()->grad_fn = node;
  node->output = out.impl();
}

}  // namespace qkvlab
