// The backward pass. Tensor::backward below is the whole algorithm, in four named steps:
//   1. find the order: walk the graph from the output (iteratively, so 100,000-node chains are fine) and count,
//      for every node, the consumers that will send it a gradient; a node runs when that count reaches zero, so
//      nodes run in topological order, outputs first;
//   2. run a node: hand it the sum of the gradients it received, get one gradient per input back;
//   3. deliver its gradients: check each one's shape against its input and add it to that input's sum;
//   4. skip what got none: a node whose consumers all returned no gradient does not run, and its own inputs stop
//      waiting for it.
// Around the steps: Tensor hooks and retain_grad() see a node's output gradient before the node runs;
// AccumulateGrad nodes add into the leaves' .grad; each node's saved Arrays are freed after it ran, unless
// retain_graph; QKVLAB_TRACE and anomaly mode (autograd/diagnostics.h). Graph recording: autograd/record.cpp.
#include <unordered_map>
#include <vector>

#include "autograd/diagnostics.h"
#include "autograd/node.h"
#include "tensor/ops.h"

namespace qkvlab {

std::vector<Array> AccumulateGrad::backward(const Array& grad) {
  if (auto impl = leaf.lock()) {
    if (!impl->grad.defined()) impl->grad = grad.clone();  // own copy: grad may alias another tensor's data
    else add_(impl->grad, grad);
  }
  return {};
}

namespace {

bool is_leaf_sink(const Node* n) { return dynamic_cast<const AccumulateGrad*>(n) != nullptr; }

// The gradient the pass starts from: grad_in, or 1 for a one-element output.
Array seed_gradient(const Tensor& out, const Array& grad_in) {
  check(out.defined(), "backward: the tensor is undefined");
  check(out.requires_grad(), "backward: the tensor does not require grad (no input of its graph has requires_grad)");
  Array grad = grad_in;
  if (!grad.defined()) {
    check(out.numel() == 1, "backward: a gradient can be implied only for a one-element output; got shape ",
          out.shape(), ", pass grad explicitly");
    grad = Array::ones(out.shape(), out.dtype());
  }
  check(grad.shape() == out.shape(), "backward: gradient of shape ", grad.shape(),
        " for an output of shape ", out.shape());
  check(grad.dtype() == out.dtype(), "backward: gradient is ", dtype_name(grad.dtype()), ", output is ",
        dtype_name(out.dtype()));
  return grad;
}

// Hooks and retain_grad() on the tensor node n produced: they see (and hooks may replace) its gradient g.
void apply_output_hooks(const Node& n, Array& g) {
  auto out = n.output.lock();
  if (!out) return;
  for (auto& hook : out->hooks) {
    Array r = hook(g);
    if (r.defined()) {
      check(r.shape() == g.shape(), "backward: a hook on the output of ", n.name(), " returned a gradient of shape ",
            r.shape(), " for a tensor of shape ", g.shape());
      g = r;
    }
  }
  if (out->retains_grad && out->grad_fn) {
    if (!out->grad.defined()) out->grad = g.clone();
    else add_(out->grad, g);
  }
}

// The state of one backward pass.
struct BackwardPass {
  explicit BackwardPass(bool retain_graph) : retain_graph(retain_graph) {}
  const bool retain_graph;
  const bool anomaly = anomaly_enabled();
  std::unordered_map<Node*, int> consumers_left;  // per node: consumers that have not yet run (or been skipped)
  std::unordered_map<Node*, Array> grad_sum;      // per node: the sum of the gradients delivered to it so far
  std::vector<Node*> ready;                       // nodes whose consumers are all done and that got a gradient

  // Step 1: count every reachable node's consumers (iterative depth-first walk).
  void count_consumers(Node* root) {
    std::vector<Node*> stack{root};
    consumers_left[root] = 0;
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (auto& e : n->next) {
        if (!e) continue;
        auto it = consumers_left.find(e.get());
        if (it == consumers_left.end()) {
          consumers_left[e.get()] = 1;
          stack.push_back(e.get());
        } else {
          it->second++;
        }
      }
    }
  }

  // Before step 2: the gradient node n runs on, its sum taken out of grad_sum, through the output's hooks.
  Array take_gradient(Node* n) {
    Array g = std::move(grad_sum[n]);
    grad_sum.erase(n);
    if (n->released)
      fail("backward: the graph was already freed (", n->name(),
           " ran in an earlier backward); pass retain_graph=true to the first backward to call it twice");
    apply_output_hooks(*n, g);
    return g;
  }

  // After step 2: free what n saved for its backward (a leaf's sink saves nothing), check the gradient count.
  void finish_node(Node* n, const std::vector<Array>& in_grads) {
    if (!retain_graph && !is_leaf_sink(n)) {
      n->release_saved();
      n->released = true;
    }
    check(in_grads.size() == n->next.size() || is_leaf_sink(n), "backward: ", n->name(), " returned ",
          in_grads.size(), " gradients for ", n->next.size(), " inputs");
  }

  // Step 3: add n's gradient for each input to that input's sum; tell the input one consumer is done.
  void deliver(const Node* n, std::vector<Array>& in_grads) {
    for (size_t i = 0; i < n->next.size(); ++i) {
      Node* input = n->next[i].get();
      if (!input) continue;
      Array& gi = in_grads[i];
      if (gi.defined()) {
        check(gi.shape() == n->input_shapes[i], "backward: ", n->name(), " returned a gradient of shape ",
              gi.shape(), " for its input ", i, " of shape ", n->input_shapes[i]);
        if (anomaly) check_backward_anomaly(*n, i, gi);
        auto it = grad_sum.find(input);
        if (it == grad_sum.end() || !it->second.defined()) grad_sum[input] = std::move(gi);
        else {
          ProfileScope prof("(sum of gradients)", ProfilePhase::Backward);  // a tensor used twice: add up
          Array& sum = it->second;
          // Into the running sum itself when nothing else holds its memory (a gradient a node returned for two
          // inputs is shared, and stays untouched): the same values, without a new array per addition.
          if (sum.storage().use_count() == 1 && sum.is_contiguous() && sum.shape() == gi.shape() &&
              sum.dtype() == gi.dtype())
            add_(sum, gi);
          else
            sum = add(sum, gi);
        }
      }
      consumer_done(input);
    }
  }

  // One consumer of n is done. When it was the last, n is ready if it got a gradient; if not (step 4), skip
  // it: n never runs, so each of its own inputs has one consumer fewer to wait for, and so on down.
  void consumer_done(Node* n) {
    std::vector<Node*> skipped;
    auto one_less = [&](Node* m) {
      if (--consumers_left[m] != 0) return;
      auto it = grad_sum.find(m);
      if (it != grad_sum.end() && it->second.defined()) {
        ready.push_back(m);
      } else {
        if (it != grad_sum.end()) grad_sum.erase(it);
        skipped.push_back(m);
      }
    };
    one_less(n);
    while (!skipped.empty()) {
      Node* s = skipped.back();
      skipped.pop_back();
      for (auto& e : s->next)
        if (e) one_less(e.get());
    }
  }
};

}  // namespace

void Tensor::backward(const Array& grad_in, bool retain_graph) const {
  Array grad = seed_gradient(*this, grad_in);
  std::shared_ptr<Node> root = edge_to(*this);
  BackwardPass pass(retain_graph);
  pass.count_consumers(root.get());                  // 1. find the order
  pass.grad_sum[root.get()] = grad;
  pass.ready.push_back(root.get());
  const bool trace = trace_enabled();
  while (!pass.ready.empty()) {
    Node* n = pass.ready.back();
    pass.ready.pop_back();
    Array g = pass.take_gradient(n);
    std::vector<Array> in_grads;
    {
      ProfileScope prof(n->name(), ProfilePhase::Backward);  // QKVLAB_PROFILE=1: time per node name
      n->last_run = !pass.retain_graph;
      in_grads = n->backward(g);                     // 2. run a node
    }
    if (trace) trace_node(*n, g, in_grads);
    pass.finish_node(n, in_grads);
    pass.deliver(n, in_grads);                       // 3. deliver its gradients, 4. skip what got none
  }
}

}  // namespace qkvlab
