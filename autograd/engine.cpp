// The backward engine, in one place:
//   1. walk the graph from the output (iteratively: no recursion, so 100,000-node chains are fine) and count,
//      for every node, how many consumers will send it a gradient;
//   2. process nodes in topological order (a node runs once all its consumers have run), summing the gradients
//      that arrive for each node, checking each returned gradient's shape against the input it belongs to;
//   3. AccumulateGrad nodes add the result into the leaves' .grad;
//   4. free each node's saved Arrays after it ran, unless retain_graph.
// Tensor hooks and retain_grad() act on the gradient of a node's output before the node runs.
// QKVLAB_TRACE=1 prints each node as it runs with the norms of its gradients.
#include <execinfo.h>
#include <cxxabi.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace qkvlab {

namespace {
std::atomic<uint64_t> g_sequence{0};

bool trace_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("QKVLAB_TRACE");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

double norm(const Array& a) {
  if (!a.defined()) return 0.0;
  double s = 0.0;
  for (double v : a.to_vector()) s += v * v;
  return std::sqrt(s);
}

std::string where_str(const Node& n) {
  std::string s = std::string(n.created_at.file_name()) + ":" + std::to_string(n.created_at.line()) + " in " +
                  n.created_at.function_name();
  if (!n.backtrace.empty()) s += "\n  call stack at creation:\n" + n.backtrace;
  return s;
}

// The creating call stack, demangled, without the engine's own frames. Only taken in anomaly mode.
std::string capture_backtrace() {
  void* frames[24];
  int n = ::backtrace(frames, 24);
  char** symbols = ::backtrace_symbols(frames, n);
  if (!symbols) return "";
  std::string out;
  int shown = 0;
  for (int i = 1; i < n && shown < 8; ++i) {
    std::string line = symbols[i];
    std::string fn = line;
    size_t lp = line.find('('), plus = line.find('+', lp == std::string::npos ? 0 : lp);
    bool named = lp != std::string::npos && plus != std::string::npos && plus > lp + 1;
    if (!named && shown == 0) continue;  // the library's own unnamed frames (inlined record<>), above the op
    if (named) {
      std::string mangled = line.substr(lp + 1, plus - lp - 1);
      int status = 0;
      char* dem = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
      if (status == 0 && dem) fn = dem;
      else fn = mangled;
      std::free(dem);
    }
    if (fn.find("qkvlab::record") != std::string::npos || fn.find("qkvlab::attach") != std::string::npos ||
        fn.find("capture_backtrace") != std::string::npos)
      continue;
    if (fn.size() > 160) fn = fn.substr(0, 157) + "...";
    out += "    " + fn + "\n";
    ++shown;
  }
  std::free(symbols);
  return out;
}
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

std::vector<Array> AccumulateGrad::backward(const Array& grad) {
  if (auto impl = leaf.lock()) {
    if (!impl->grad.defined()) impl->grad = grad.clone();  // own copy: grad may alias another tensor's data
    else add_(impl->grad, grad);
  }
  return {};
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

void check_forward_anomaly(const char* op, const Array& out, const SourceLocation& loc) {
  if (out.dtype() == DType::I64 || all_finite(out)) return;
  fail("anomaly: ", op, " produced NaN or Inf in its forward output ", shape_str(out.shape()), " (called at ",
       loc.file_name(), ":", loc.line(), " in ", loc.function_name(), ")");
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

void Tensor::backward(const Array& grad_in, bool retain_graph) const {
  check(defined(), "backward: the tensor is undefined");
  check(requires_grad(), "backward: the tensor does not require grad (no input of its graph has requires_grad)");
  Array grad = grad_in;
  if (!grad.defined()) {
    check(numel() == 1, "backward: a gradient can be implied only for a one-element output; got shape ",
          shape_str(shape()), ", pass grad explicitly");
    grad = Array::ones(shape(), dtype());
  }
  check(grad.shape() == shape(), "backward: gradient of shape ", shape_str(grad.shape()),
        " for an output of shape ", shape_str(shape()));
  check(grad.dtype() == dtype(), "backward: gradient is ", dtype_name(grad.dtype()), ", output is ",
        dtype_name(dtype()));

  std::shared_ptr<Node> root = edge_to(*this);

  // 1. Count consumers of every reachable node (iterative DFS).
  std::unordered_map<Node*, int> pending_inputs;
  std::vector<Node*> stack{root.get()};
  pending_inputs[root.get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& e : n->next) {
      if (!e) continue;
      auto it = pending_inputs.find(e.get());
      if (it == pending_inputs.end()) {
        pending_inputs[e.get()] = 1;
        stack.push_back(e.get());
      } else {
        it->second++;
      }
    }
  }

  // 2. Topological order: a node is ready when every consumer has delivered its gradient.
  std::unordered_map<Node*, Array> grads;
  grads[root.get()] = grad;
  std::vector<Node*> ready{root.get()};
  const bool anomaly = anomaly_enabled();
  const bool trace = trace_enabled();
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Array g = std::move(grads[n]);
    grads.erase(n);
    if (n->released)
      fail("backward: the graph was already freed (", n->name(),
           " ran in an earlier backward); pass retain_graph=true to the first backward to call it twice");

    // Hooks and retain_grad on the tensor this node produced.
    if (auto out = n->output.lock()) {
      for (auto& hook : out->hooks) {
        Array r = hook(g);
        if (r.defined()) {
          check(r.shape() == g.shape(), "backward: a hook on the output of ", n->name(),
                " returned a gradient of shape ", shape_str(r.shape()), " for a tensor of shape ",
                shape_str(g.shape()));
          g = r;
        }
      }
      if (out->retains_grad && out->grad_fn) {
        if (!out->grad.defined()) out->grad = g.clone();
        else add_(out->grad, g);
      }
    }

    std::vector<Array> in_grads;
    {
      ProfileScope prof(n->name(), ProfilePhase::Backward);  // QKVLAB_PROFILE=1: time per node name
      in_grads = n->backward(g);
    }
    if (trace) {
      std::fprintf(stderr, "[trace] %-22s out %-14s |grad_out| %-11.5g", n->name(), shape_str(n->output_shape).c_str(),
                   norm(g));
      for (size_t i = 0; i < in_grads.size(); ++i) {
        if (in_grads[i].defined()) std::fprintf(stderr, "  |grad_in%zu| %.5g", i, norm(in_grads[i]));
        else std::fprintf(stderr, "  |grad_in%zu| none", i);  // that input needs no gradient
      }
      std::fprintf(stderr, "\n");
    }
    if (!retain_graph && dynamic_cast<AccumulateGrad*>(n) == nullptr) {
      n->release_saved();
      n->released = true;
    }
    check(in_grads.size() == n->next.size() || dynamic_cast<AccumulateGrad*>(n) != nullptr, "backward: ",
          n->name(), " returned ", in_grads.size(), " gradients for ", n->next.size(), " inputs");

    for (size_t i = 0; i < n->next.size(); ++i) {
      Node* child = n->next[i].get();
      if (!child) continue;
      Array& gi = in_grads[i];
      if (gi.defined()) {
        check(gi.shape() == n->input_shapes[i], "backward: ", n->name(), " returned a gradient of shape ",
              shape_str(gi.shape()), " for its input ", i, " of shape ", shape_str(n->input_shapes[i]));
        if (anomaly && !all_finite(gi))
          fail("anomaly: ", n->name(), " produced NaN or Inf in the gradient of its input ", i,
               " during backward; the op was created at ", where_str(*n));
        auto it = grads.find(child);
        if (it == grads.end() || !it->second.defined()) grads[child] = std::move(gi);
        else {
          ProfileScope prof("(sum of gradients)", ProfilePhase::Backward);  // a tensor used twice: add up
          it->second = add(it->second, gi);
        }
      }
      if (--pending_inputs[child] == 0) {
        if (grads.count(child) && grads[child].defined()) {
          ready.push_back(child);
        } else {
          // No gradient reached it (every consumer returned none): skip it but release what it waits on.
          grads.erase(child);
          std::vector<Node*> skip{child};
          while (!skip.empty()) {
            Node* s = skip.back();
            skip.pop_back();
            for (auto& e : s->next)
              if (e && --pending_inputs[e.get()] == 0) {
                if (grads.count(e.get()) && grads[e.get()].defined()) ready.push_back(e.get());
                else skip.push_back(e.get());
              }
          }
        }
      }
    }
  }
}

}  // namespace qkvlab
