// Node: one recorded op in the graph. Forward and backward of an op live side by side in autograd/ops_*.cpp:
//
//   struct MulBackward : Node {                 // the name shows in print_graph and to_dot
//     Array a, b;                               // saved inputs (a node never owns its own output)
//     std::vector<Array> backward(const Array& g) override { return {g * b, g * a}; }
//   };
//
// backward() gets the gradient of the op's output and returns one gradient per input (an undefined Array for an
// input that needs none: see needs_grad(i)). The engine checks each gradient's shape against the input's.
#pragma once
#include <cstdint>
#include <memory>
#include "autograd/source_location.h"
#include <string>
#include <vector>

#include "autograd/profile.h"
#include "autograd/tensor.h"

namespace qkvlab {

struct Node {
  virtual ~Node();  // iterative: a 100,000-node chain is freed without deep recursion
  virtual const char* name() const = 0;
  virtual std::vector<Array> backward(const Array& grad) = 0;
  virtual void release_saved() {}  // drop saved Arrays after backward (unless retain_graph)

  bool needs_grad(size_t input) const { return input < next.size() && next[input] != nullptr; }

  std::vector<std::shared_ptr<Node>> next;  // per input: the node its gradient flows to (null: none needed)
  std::vector<Shape> input_shapes;          // per input, to check what backward returns
  Shape output_shape;
  DType dtype = DType::F32;
  std::weak_ptr<TensorImpl> output;         // for hooks and retain_grad; weak, so no cycle
  bool released = false;                    // saved Arrays are gone: a second backward is an error
  bool last_run = false;                    // set while backward runs without retain_graph: the saved Arrays
                                            // are released right after, so backward may consume them
  uint64_t sequence = 0;                    // creation order
  SourceLocation created_at;                // where the op was called (for anomaly messages)
  std::string backtrace;                    // in anomaly mode: the call stack at creation
};

// The sink for leaves: adds the incoming gradient into the leaf's .grad.
struct AccumulateGrad : Node {
  std::weak_ptr<TensorImpl> leaf;
  const char* name() const override { return "AccumulateGrad"; }
  std::vector<Array> backward(const Array& grad) override;
};

// Records an op. Op implementations call it after computing `out`:
//   return record<MulBackward>(out, {a, b}, loc, [&](MulBackward& n) { n.a = a.data(); n.b = b.data(); });
// When no input requires grad (or under NoGradGuard) no node is made and `save` is never called.
std::shared_ptr<Node> edge_to(const Tensor& input);  // grad_fn, the leaf's accumulator, or null
void attach(const std::shared_ptr<Node>& node, Tensor& out, const std::vector<const Tensor*>& inputs,
            const SourceLocation& loc);        // fills node bookkeeping and anomaly checks
bool any_requires_grad(const std::vector<const Tensor*>& inputs);
void check_forward_anomaly(const char* op, const Array& out, const SourceLocation& loc);

template <class N, class Save>
Tensor record(Array out, std::initializer_list<const Tensor*> inputs, const SourceLocation& loc,
              Save&& save) {
  std::vector<const Tensor*> ins(inputs);
  Tensor result(std::move(out));
  if (anomaly_enabled()) check_forward_anomaly(N().name(), result.data(), loc);
  if (!grad_enabled() || !any_requires_grad(ins)) return result;
  auto node = std::make_shared<N>();
  save(*node);
  attach(node, result, ins, loc);
  return result;
}

}  // namespace qkvlab
