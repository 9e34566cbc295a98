#include "autograd/recompute.h"

#include <optional>

#include "autograd/node.h"

namespace qkvlab {

namespace {
// Sets a generator back to a saved state for a scope, and restores the state it had when the scope ends.
struct RngReplay {
  Generator* rng;
  Generator::State after{};
  RngReplay(Generator* g, const std::optional<Generator::State>& replay) : rng(g) {
    if (!rng) return;
    after = rng->state();
    rng->set_state(*replay);
  }
  ~RngReplay() {
    if (rng) rng->set_state(after);
  }
  RngReplay(const RngReplay&) = delete;
  RngReplay& operator=(const RngReplay&) = delete;
};

struct RecomputeBackward : Node {
  RecomputeFn fn;
  std::vector<Array> inputs;                      // the only thing kept from forward
  std::optional<Generator::State> rng_state;      // the generator as forward found it
  Generator* rng = nullptr;
  const char* name() const override { return "RecomputeBackward"; }

  std::vector<Array> backward(const Array& g) override {
    ProfileSplit split(/*recompute=*/true);  // the profile shows fn's own ops, not one row for all of this
    // 1. Fresh leaves holding the saved inputs, so that the recomputed graph ends at them.
    std::vector<Tensor> xs;
    for (size_t i = 0; i < inputs.size(); ++i) xs.emplace_back(inputs[i], needs_grad(i));
    // 2. Forward again, recording this time, with the random stream as the first forward drew it.
    Tensor y;
    {
      EnableGradGuard record;
      RngReplay replay(rng, rng_state);  // the stream as forward found it; put back afterwards, even on a throw
      y = fn(xs);
    }
    check(y.defined() && y.shape() == output_shape && y.dtype() == dtype,
          "recompute_in_backward: the recomputed output is ", y.defined() ? dtype_name(y.dtype()) : "undefined",
          " of shape ", y.defined() ? shape_str(y.shape()) : std::string("()"), ", the first forward gave ",
          dtype_name(dtype), " of shape ", output_shape, ": fn must compute the same thing both times");
    // 3. Backward through it: parameters inside fn accumulate into their .grad, the inputs' gradients return.
    if (y.requires_grad()) y.backward(g);
    std::vector<Array> grads;
    for (size_t i = 0; i < xs.size(); ++i) grads.push_back(needs_grad(i) ? xs[i].grad() : Array());
    return grads;
  }
  void release_saved() override {
    inputs.clear();
    fn = nullptr;
  }
};
}  // namespace

Tensor recompute_in_backward(RecomputeFn fn, const std::vector<Tensor>& inputs, Generator* rng, const Loc& loc) {
  check(static_cast<bool>(fn), "recompute_in_backward: no function given");
  std::optional<Generator::State> before;
  if (rng) before = rng->state();
  Tensor y;
  {
    NoGradGuard no_graph;  // nothing inside fn is recorded, so nothing inside fn is kept
    y = fn(inputs);
  }
  check(y.defined(), "recompute_in_backward: fn returned an undefined tensor");
  std::vector<const Tensor*> ins;
  for (const Tensor& t : inputs) ins.push_back(&t);
  Tensor result(y.data());
  if (!grad_enabled()) return result;
  // Parameters inside fn need gradients even when no input does (the first block's input is an embedding
  // output, which does; a recomputed function of constants only is the odd case): always record.
  auto node = std::make_shared<RecomputeBackward>();
  node->fn = std::move(fn);
  for (const Tensor& t : inputs) node->inputs.push_back(t.data());
  node->rng = rng;
  node->rng_state = before;
  attach(node, result, ins, loc);
  return result;
}

}  // namespace qkvlab
