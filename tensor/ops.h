// Kernels on raw Arrays: elementwise (any strides, NumPy broadcasting), reductions, matmul, softmax,
// layer norm, cross-entropy, indexing. Every function returns a new contiguous Array (in-place ones end in _)
// and works for float32 and float64 (int64 where it says so). Shape errors name the op and both shapes:
// "add: cannot broadcast (3,4) with (5,)"; int64 input to a float kernel: "exp: expected a floating-point tensor,
// got int64"; mixed dtypes: "add: expected operands of the same dtype, got float32 and float64".
// Inputs may be any view (permuted, sliced with steps, expanded with stride 0, offset); nothing is copied first.
// Implementation: tensor/ops_elementwise.cpp, ops_reduce.cpp, ops_matmul.cpp, ops_nn.cpp, ops_index.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/array.h"

namespace qkvlab {

// ---- unary (float32/float64) ----
Array neg(const Array& a);
Array exp(const Array& a);
Array log(const Array& a);
Array sqrt(const Array& a);
Array tanh(const Array& a);
Array relu(const Array& a);                              // NaN stays NaN
Array gelu(const Array& a);                              // exact: x * 0.5 * (1 + erf(x / sqrt(2)))
Array gelu_backward(const Array& x, const Array& grad);  // grad * d gelu(x) / dx
// gelu(x) and gelu_backward(x, grad) in one pass that evaluates Phi(x) once per element (the backward of
// gelu_linear needs both), bit for bit the two calls above (a NaN input gives a NaN, whose sign may differ on
// ARM64): returns gelu(x) and sets grad to the gradient, in
// place when grad is a contiguous float array of x's shape (then nothing else may still read it).
Array gelu_and_backward_(const Array& x, Array& grad);
// The same with gelu(x) written over x instead of into a new array, for a backward that holds the only reference to
// x and needs it no more (GeluLinearBackward): in place when x too is contiguous float, else x is rebound to a new
// array. Nothing else may read x's buffer afterwards.
void gelu_and_backward_inplace_(Array& x, Array& grad);
// gelu(x), and its derivative d gelu(x) / dx written into `slope` (a new array of x's shape), from one Phi(x) per
// element: the bits of gelu(x) and of gelu_backward(x, 1). For a backward that keeps both instead of x
// (gelu_linear with small activations): gelu_backward(x, g) = g * slope, bit for bit in float32.
Array gelu_and_slope(const Array& x, Array& slope);
Array abs(const Array& a);
Array sign(const Array& a);                              // -1, 0, 1 (NaN stays NaN)
Array pow(const Array& a, double exponent);
Array isfinite_mask(const Array& a);                     // 1 where finite, else 0 (same dtype)
bool all_finite(const Array& a);

// ---- binary, broadcasting (float32/float64; both operands must have the same dtype) ----
Array add(const Array& a, const Array& b);
Array sub(const Array& a, const Array& b);
Array mul(const Array& a, const Array& b);
Array div(const Array& a, const Array& b);
Array pow(const Array& a, const Array& b);
Array maximum(const Array& a, const Array& b);           // NaN in either operand gives NaN (as PyTorch)
Array minimum(const Array& a, const Array& b);
Array eq(const Array& a, const Array& b);                // 1 / 0 in a's dtype
Array gt(const Array& a, const Array& b);
Array lt(const Array& a, const Array& b);
// with a scalar
Array add(const Array& a, double b);
Array mul(const Array& a, double b);
Array rsub(double a, const Array& b);                    // a - b
Array rdiv(double a, const Array& b);                    // a / b

inline Array operator+(const Array& a, const Array& b) { return add(a, b); }
inline Array operator-(const Array& a, const Array& b) { return sub(a, b); }
inline Array operator*(const Array& a, const Array& b) { return mul(a, b); }
inline Array operator/(const Array& a, const Array& b) { return div(a, b); }
inline Array operator-(const Array& a) { return neg(a); }
inline Array operator+(const Array& a, double b) { return add(a, b); }
inline Array operator*(const Array& a, double b) { return mul(a, b); }
inline Array operator*(double a, const Array& b) { return mul(b, a); }

// where(cond, a, b): a where cond != 0, else b; all three broadcast together.
Array where(const Array& cond, const Array& a, const Array& b);
// masked_fill(a, mask, value): value where mask != 0; mask broadcasts to a's shape.
// cond and mask may be float32, float64 or int64.
Array masked_fill(const Array& a, const Array& mask, double value);

// ---- in place ----
// dst may be any non-expanded view (an expanded dst, stride 0 on a dim of size > 1, is an error). A src that
// shares dst's memory in another layout (add_(x, x.mT())) is read from a copy, so the result is as if
// src were evaluated first.
void add_(Array& dst, const Array& src);                 // dst += src; src broadcasts to dst's shape
void axpy_(Array& dst, double alpha, const Array& src);  // dst += alpha * src
void mul_(Array& dst, double alpha);                     // dst *= alpha
void mul_(Array& dst, const Array& src);                 // dst *= src; src broadcasts to dst's shape

// ---- reductions (dims may be negative; empty dims = all dims) ----
// Sums accumulate in double (also for float32), so 1e6-element sums are exact to ~1e-7 relative, and the
// result does not depend on the thread count. The mean over zero elements is NaN (as NumPy/PyTorch).
Array sum(const Array& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Array mean(const Array& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// max/argmax: a NaN wins (the first NaN), as in PyTorch. A dim of size 0 is an error.
Array max(const Array& a, int64_t dim, bool keepdim = false);       // values
Array argmax(const Array& a, int64_t dim, bool keepdim = false);    // int64 indices; ties -> lowest index
double max_all(const Array& a);                                     // NaN if any; error when empty
// Sums a broadcast result back to `shape` (the inverse of expand): the gradient rule of broadcasting.
// Sums the leading extra dims and the dims where `shape` has 1. `shape` must broadcast to a.shape(), else
// "sum_to: cannot reduce (2,3) to (4,) (the target must broadcast to the source)". Always a new array.
Array sum_to(const Array& a, const Shape& shape);

// ---- linear algebra ----
// matmul: (..., M, K) @ (..., K, N) -> (..., M, N); batch dims broadcast; 1-D operands as in NumPy.
// Transposed or otherwise strided operands are read in place (no copies). "matmul: inner dims differ: (4,3) @ (5,2)"
Array matmul(const Array& a, const Array& b);
// out = a @ b written into out, a view of shape (..., M, N) with dense rows (last stride 1) and any other strides
// (e.g. a block of a bigger array); a and b broadcast to out's batch dims. The same bits as matmul.
void matmul_into(Array& out, const Array& a, const Array& b);
// (a @ b) * scale for matrices a (M, K) and b (K, N) and a scale of the product's shape (M, N) with dense rows:
// the multiplication happens where the GEMM stores the product, so there is no second pass over it. The same bits
// as mul(matmul(a, b), scale). (A backward through GELU: dh = (dy @ w) * gelu'(h).)
Array matmul_scaled(const Array& a, const Array& b, const Array& scale);
// linear: x @ w^T + b in one pass, as nn.Linear computes it: x (..., in), w (out, in), b (out) or undefined ->
// (..., out). The bias is written into the output first and the product is accumulated onto it, so there is no
// separate pass to add it. "linear: input (4,3) does not end in the weight's 5 inputs (weight (2,5))"
Array linear(const Array& x, const Array& w, const Array& b);
// The gradients of linear for g = dL/dy, with x as (rows, in) and g as (rows, out), each when asked for:
//   dx = g @ w  (times `scale`, an array of x's shape, when defined: through a GELU, dh = (dy @ w) * gelu'(h))
//   dw = g^T @ x          db = g summed over the rows
// The same bits as matmul (or matmul_scaled), matmul and sum. Float rows (512 or more) run in blocks of 256 rows
// (the GEMM's block along K, kGemmKBlock in tensor/gemm.h), each block's three products while its rows of g and x
// are in cache, every thread taking its share of each block in one parallel region.
// "linear_backward: g (4,3) and x (6,5) do not have the same rows"
struct LinearGrads {
  Array dx, dw, db;  // undefined when not asked for
};
LinearGrads linear_backward(const Array& g, const Array& x, const Array& w, const Array& scale, bool want_dx,
                            bool want_dw, bool want_db);

// ---- softmax family, along `dim`, numerically stable (max subtracted) ----
// A row whose entries are all -inf (a fully masked attention row) is defined here as softmax = all zeros (no
// NaN; PyTorch gives NaN) and log_softmax = all -inf; softmax_backward of such a row is then 0. A NaN anywhere
// in a row makes the whole row NaN. log_softmax is computed as (x - max) - log(sum exp(x - max)), so logits of
// +-1e4 keep full float32 precision. 0-d inputs are one row of one element.
Array softmax(const Array& a, int64_t dim);
Array log_softmax(const Array& a, int64_t dim);
Array softmax_backward(const Array& y, const Array& grad, int64_t dim);      // y = softmax output
Array log_softmax_backward(const Array& y, const Array& grad, int64_t dim);  // y = log_softmax output
// The attention softmax, fused: scaled_causal_softmax(x, scale, causal) equals
//   softmax(masked_fill(x * scale, causal ? causal_mask : 0, -inf), -1)
// bit for bit, in one pass and without reading masked entries. x is (..., T, S): T queries, S keys (the last
// dim); causal lets query i (0-based) see keys j <= i + (S - T), the query positions of a KV cache (S >= T).
// Masked entries come out exactly 0. The edge cases are softmax's (above): a row whose visible scores are all -inf
// (or that sees no key: T > S) is all 0; a NaN (or +inf) among the visible scores makes the whole row NaN. Any
// strides (packed first); contiguous input is the fast path.
// scaled_causal_softmax_backward(p, g, scale, causal) = scale * p * (g - sum_j g_j p_j), 0 on masked entries: the
// chain's backward, bit for bit in float32 and to the last bit in float64 (where the chain's own row sum rounds
// differently with the layout). p is the forward's output, all the backward needs. It reads neither p nor g at
// masked entries, so a non-finite g there is ignored where the chain would spread 0 * inf = NaN over the row.
Array scaled_causal_softmax(const Array& x, double scale, bool causal);
Array scaled_causal_softmax_backward(const Array& p, const Array& grad, double scale, bool causal);
// The same two, written over x and over grad (each contiguous): the same bits, one (..., T, S) array fewer.
void scaled_causal_softmax_(Array& x, double scale, bool causal);
void scaled_causal_softmax_backward_(const Array& p, Array& grad, double scale, bool causal);

// ---- layer norm over the last dim ----
// Biased variance (as PyTorch). Statistics in double; the mean is computed shifted by the row's first element, so a
// constant row gives mean = x exactly, var = 0 and y = bias exactly (no NaN for eps > 0). weight/bias: (C,).
// layer_norm_backward: dx = rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)); dweight = sum over rows of
// g*xhat; dbias = sum over rows of g (computed when has_bias).
struct LayerNormOut {
  Array y;     // same shape as x
  Array mean;  // x.shape[:-1]
  Array rstd;  // 1 / sqrt(var + eps), x.shape[:-1]
};
LayerNormOut layer_norm(const Array& x, const Array& weight, const Array& bias, double eps);  // weight/bias may be undefined
struct LayerNormGrads {
  Array dx, dweight, dbias;  // dweight/dbias undefined when weight/bias were
};
LayerNormGrads layer_norm_backward(const Array& grad, const Array& x, const Array& mean, const Array& rstd,
                                   const Array& weight, bool has_bias);

// ---- cross-entropy: fused log-softmax + negative log-likelihood ----
// logits (N, C), targets int64 (N). Rows whose target == ignore_index do not count. Returns the mean loss over
// counted rows (0-d) and the per-row log-sum-exp (N) for the backward. A target outside [0, C) that is not
// ignore_index is an error naming the row and value: "cross_entropy: target 12 at row 3 is out of range for 10
// classes". When every row is ignored (or N = 0), loss = 0 and count = 0 (no 0/0 NaN), and the backward gives
// zeros. Logits may be any strided (N,C) view.
struct CrossEntropyOut {
  Array loss;      // 0-d
  Array lse;       // (N)
  int64_t count;   // rows counted
};
CrossEntropyOut cross_entropy(const Array& logits, const Array& targets, int64_t ignore_index = -100);
// d loss / d logits = (softmax(logits) - onehot(target)) * grad / count, zero on ignored rows.
Array cross_entropy_backward(const Array& logits, const Array& targets, const Array& lse, int64_t count,
                             double grad, int64_t ignore_index = -100);

// ---- indexing ----
// embedding(weight (V, C), ids int64 of any shape) -> (ids.shape..., C).
// "embedding: id 70 at position 3 is out of range for 65 rows"
Array embedding(const Array& weight, const Array& ids);
// dweight (V,C) += scatter of grad (ids.shape..., C) rows; repeated ids add up. Threads split columns (no races,
// same order on any thread count). dweight may be a strided view.
void embedding_backward_(Array& dweight, const Array& ids, const Array& grad);  // scatter-add rows of grad
Array index_select(const Array& a, int64_t dim, const Array& index);           // index: 1-D int64; a: any dtype
// Shapes must agree except along dim: "concat: shapes (2,3) and (3,3) (parts 0 and 1) differ outside dim 1".
Array concat(const std::vector<Array>& parts, int64_t dim);
// A dropout mask of `shape`: 0 with probability p, else 1/(1-p), drawn from gen (one uniform per element in
// row-major order). p must be in [0, 1).
Array dropout_mask(const Shape& shape, double p, Generator& gen, DType dtype = DType::F32);

// ---- comparisons for tests ----
// Any dtypes (compared in double). max_abs_diff is NaN when either side has a NaN (so "< tol" fails); equal
// infinities count as equal. allclose: |a - b| <= atol + rtol * |b| everywhere, as torch.allclose.
double max_abs_diff(const Array& a, const Array& b);  // shapes must broadcast
bool allclose(const Array& a, const Array& b, double rtol = 1e-5, double atol = 1e-8);

}  // namespace qkvlab
