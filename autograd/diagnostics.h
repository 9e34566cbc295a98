// What the engine and the recorder say when asked to: anomaly mode (QKVLAB_ANOMALY=1, AnomalyGuard) and the trace
// of a backward pass (QKVLAB_TRACE=1). Internal to autograd/: record.cpp and engine.cpp call these.
#pragma once
#include <string>
#include <vector>

#include "autograd/node.h"

namespace qkvlab {

// Anomaly mode, at record time: the creating call stack, demangled, without the recorder's own frames.
std::string capture_backtrace();
// Anomaly mode, in backward: fails (naming the op, where it was created and its call stack) if the gradient that
// node n returned for its input i holds a NaN or Inf.
void check_backward_anomaly(const Node& n, size_t input, const Array& grad);

// QKVLAB_TRACE=1 (read once): print each node as the engine runs it, with the norms of its gradients.
bool trace_enabled();
void trace_node(const Node& n, const Array& grad_out, const std::vector<Array>& grad_in);

}  // namespace qkvlab
