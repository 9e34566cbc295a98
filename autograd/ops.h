// Differentiable ops. Each is a function that computes its result with the raw kernels of tensor/ops.h and
// records a named backward Node (autograd/node.h); forward and backward sit side by side in ops_*.cpp.
// Binary ops broadcast by inserting an explicit expand (whose backward sums), so every other backward
// sees equal shapes. The last parameter records where the op was called, for anomaly messages; leave it out.
#pragma once
#include <cstdint>
#include "autograd/source_location.h"
#include <vector>

#include "autograd/tensor.h"
#include "tensor/ops.h"

namespace qkvlab {

using Loc = SourceLocation;
#define QKVLAB_LOC const Loc& loc = Loc::current()

// ---- elementwise ----
// add takes its operands by value so that it can tell a temporary from a tensor someone still holds: an operand
// passed as a temporary (x + f(x) written add(x, f(x)), the residual stream) whose values no one else holds
// either (no node saved them, no view shares them), dense, floating point and of the sum's shape, gets the sum
// written over it, with no new buffer (the demo's six adds a step, (2048, 64) each: 0.25 -> 0.14 ms). The same
// values. A tensor handed over with std::move counts as a temporary (its hooks and retain_grad go with it).
Tensor add(Tensor a, Tensor b, QKVLAB_LOC);
Tensor sub(const Tensor& a, const Tensor& b, QKVLAB_LOC);
Tensor mul(const Tensor& a, const Tensor& b, QKVLAB_LOC);
Tensor div(const Tensor& a, const Tensor& b, QKVLAB_LOC);
Tensor add(const Tensor& a, double b, QKVLAB_LOC);
Tensor mul(const Tensor& a, double b, QKVLAB_LOC);
Tensor neg(const Tensor& a, QKVLAB_LOC);
Tensor pow(const Tensor& a, double exponent, QKVLAB_LOC);
Tensor exp(const Tensor& a, QKVLAB_LOC);
Tensor log(const Tensor& a, QKVLAB_LOC);
Tensor sqrt(const Tensor& a, QKVLAB_LOC);
Tensor tanh(const Tensor& a, QKVLAB_LOC);
Tensor relu(const Tensor& a, QKVLAB_LOC);
Tensor gelu(const Tensor& a, QKVLAB_LOC);  // exact (erf)

// Operators cannot have default arguments, so one Tensor operand arrives as an `At`: a Tensor converts to it
// implicitly, and the default argument of At's constructor is evaluated where the operator is written. So
// `q * k` in your code is recorded (and named by anomaly mode) at your line, not at this header.
struct At {
  const Tensor& t;
  Loc loc;
  At(const Tensor& t, const Loc& loc = Loc::current()) : t(t), loc(loc) {}  // NOLINT: implicit on purpose
};
inline Tensor operator+(At a, const Tensor& b) { return add(a.t, b, a.loc); }
inline Tensor operator-(At a, const Tensor& b) { return sub(a.t, b, a.loc); }
inline Tensor operator*(At a, const Tensor& b) { return mul(a.t, b, a.loc); }
inline Tensor operator/(At a, const Tensor& b) { return div(a.t, b, a.loc); }
inline Tensor operator-(At a) { return neg(a.t, a.loc); }
inline Tensor operator+(At a, double b) { return add(a.t, b, a.loc); }
inline Tensor operator-(At a, double b) { return add(a.t, -b, a.loc); }
inline Tensor operator*(At a, double b) { return mul(a.t, b, a.loc); }
inline Tensor operator*(double a, At b) { return mul(b.t, a, b.loc); }
inline Tensor operator/(At a, double b) { return mul(a.t, 1.0 / b, a.loc); }

// ---- reductions (empty dims = all) ----
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false, QKVLAB_LOC);
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false, QKVLAB_LOC);
Tensor max(const Tensor& a, int64_t dim, bool keepdim = false, QKVLAB_LOC);  // gradient to the first max

// ---- shape (views: no copies in forward) ----
Tensor reshape(const Tensor& a, const Shape& shape, QKVLAB_LOC);  // also serves as view
Tensor permute(const Tensor& a, const std::vector<int64_t>& dims, QKVLAB_LOC);
Tensor transpose(const Tensor& a, int64_t d0, int64_t d1, QKVLAB_LOC);
Tensor slice(const Tensor& a, int64_t dim, int64_t start, int64_t end, int64_t step = 1, QKVLAB_LOC);
Tensor expand(const Tensor& a, const Shape& shape, QKVLAB_LOC);   // backward: sum_to
Tensor unsqueeze(const Tensor& a, int64_t dim, QKVLAB_LOC);
Tensor squeeze(const Tensor& a, int64_t dim, QKVLAB_LOC);
Tensor concat(const std::vector<Tensor>& parts, int64_t dim, QKVLAB_LOC);
std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim, QKVLAB_LOC);
Tensor contiguous(const Tensor& a, QKVLAB_LOC);

// ---- linear algebra ----
Tensor matmul(const Tensor& a, const Tensor& b, QKVLAB_LOC);  // batched, broadcast batch dims
// x @ w^T + b in one op (what nn.Linear computes): x (..., in), w (out, in), b (out) or undefined. The values of
// add(matmul(x, transpose(w, 0, 1)), b) up to rounding (the bias is added first, so for in > 256 the sum is
// grouped differently), with one pass less forward and backward.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, QKVLAB_LOC);
// linear(gelu(h), w, b) in one op, the same values and gradients bit for bit: the MLP's second layer. For backward
// it keeps gelu(h) and GELU's slope when h takes at most keep_for_backward_bytes() (no GELU in backward), else h
// alone (a fifth of what a transformer block keeps), and makes gelu(h) and the slope again from it in backward.
Tensor gelu_linear(const Tensor& h, const Tensor& w, const Tensor& b, QKVLAB_LOC);

// Ops that can keep an intermediate from forward or make it again in backward (gelu_linear's GELU and slope, the
// attention core's probabilities in nn/attention/sdpa.h) keep it when it takes at most this many bytes. Default
// 4 MiB: `tiny` and the demo keep theirs (2 MB or less a layer) and skip that work in backward; `small` (8 MB a
// layer) makes them again and holds 32-64 MB less at its peak. The gradients are the same bits either way; 0
// always makes them again.
int64_t keep_for_backward_bytes();
void set_keep_for_backward_bytes(int64_t bytes);  // bytes >= 0

// ---- neural-network ops ----
Tensor embedding(const Tensor& weight, const Array& ids, QKVLAB_LOC);  // ids int64; backward scatter-adds
Tensor softmax(const Tensor& a, int64_t dim, QKVLAB_LOC);
// softmax(masked_fill(x * scale, causal mask, -inf), -1) in one op, for attention scores x (..., T, S): query i
// sees keys j <= i + (S - T) when causal. The chain's values and gradients, bit for bit in float32 (tensor/ops.h).
Tensor scaled_causal_softmax(const Tensor& x, double scale, bool causal, QKVLAB_LOC);
Tensor log_softmax(const Tensor& a, int64_t dim, QKVLAB_LOC);
// Mean over rows whose target != ignore_index. logits (..., C), targets int64 (...).
Tensor cross_entropy(const Tensor& logits, const Array& targets, int64_t ignore_index = -100, QKVLAB_LOC);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5, QKVLAB_LOC);
// Zeroes each element with probability p and scales the rest by 1/(1-p); identity when !training or p == 0.
Tensor dropout(const Tensor& a, double p, bool training, Generator& gen, QKVLAB_LOC);
Tensor masked_fill(const Tensor& a, const Array& mask, double value, QKVLAB_LOC);  // no gradient where filled
Tensor where(const Array& cond, const Tensor& a, const Tensor& b, QKVLAB_LOC);

#undef QKVLAB_LOC

}  // namespace qkvlab
