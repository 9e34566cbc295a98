// Recomputation ("activation checkpointing" in PyTorch, torch.utils.checkpoint; named differently here because
// a checkpoint in qkvlab is a saved model file): trade compute for memory.
//
// Backward needs what forward saw: a normal forward keeps every op's saved inputs alive until backward reaches
// it, and in a GPT block those are about 40 MB (B=32, T=128, d=128). recompute_in_backward(fn, inputs) runs
// fn(inputs) without recording a graph, so none of fn's intermediates are kept; its one node, RecomputeBackward,
// keeps only the inputs. When backward reaches it, it runs fn again, this time recording, and back-propagates
// the incoming gradient through that fresh graph: the gradients of the inputs go back to the engine, and every
// parameter fn uses gets its gradient in .grad as usual (a nested backward, which frees the fresh graph when
// done). The cost is a second forward of fn. It is the same computation in the same order, so the gradients are
// bitwise those of the plain forward (tests/autograd/test_recompute.cpp checks that).
//
// fn must reach tensors with history only through `inputs`: the nested backward walks the graph of whatever fn
// used, so a captured non-leaf tensor that is also used outside fn would have its graph freed by the first of the
// two backward passes (leaves, such as parameters, are fine). The result always records a node while grad mode is
// on, so it requires grad even when nothing inside fn does.
//
// fn must compute the same thing twice: when it draws random numbers (dropout), pass the generator as `rng`; its
// state is set back for the recomputation. Hooks or retain_grad() on tensors made inside fn do not fire in the
// outer backward (they belong to the discarded first graph).
#pragma once
#include <functional>
#include <vector>

#include "autograd/ops.h"  // Tensor, Loc
#include "tensor/random.h"

namespace qkvlab {

using RecomputeFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;

Tensor recompute_in_backward(RecomputeFn fn, const std::vector<Tensor>& inputs, Generator* rng = nullptr,
                  const Loc& loc = Loc::current());

}  // namespace qkvlab
