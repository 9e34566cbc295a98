// Kernels on raw Arrays: elementwise (any strides, NumPy broadcasting), reductions, matmul, softmax,
// layer norm, cross-entropy, indexing. Every function returns a new contiguous Array (in-place ones end in _)
// and works for float32 and float64 (int64 where it says so). Shape errors name the op and both shapes:
// "add: cannot broadcast (3,4) with (5,)".
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
Array relu(const Array& a);
Array gelu(const Array& a);                              // exact: x * 0.5 * (1 + erf(x / sqrt(2)))
Array gelu_backward(const Array& x, const Array& grad);  // grad * d gelu(x) / dx
Array abs(const Array& a);
Array sign(const Array& a);                              // -1, 0, 1
Array pow(const Array& a, double exponent);
Array isfinite_mask(const Array& a);                     // 1 where finite, else 0 (same dtype)
bool all_finite(const Array& a);

// ---- binary, broadcasting (float32/float64; both operands must have the same dtype) ----
Array add(const Array& a, const Array& b);
Array sub(const Array& a, const Array& b);
Array mul(const Array& a, const Array& b);
Array div(const Array& a, const Array& b);
Array pow(const Array& a, const Array& b);
Array maximum(const Array& a, const Array& b);
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
Array masked_fill(const Array& a, const Array& mask, double value);

// ---- in place ----
void add_(Array& dst, const Array& src);                 // dst += src; src broadcasts to dst's shape
void axpy_(Array& dst, double alpha, const Array& src);  // dst += alpha * src
void mul_(Array& dst, double alpha);                     // dst *= alpha

// ---- reductions (dims may be negative; empty dims = all dims) ----
Array sum(const Array& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Array mean(const Array& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Array max(const Array& a, int64_t dim, bool keepdim = false);       // values
Array argmax(const Array& a, int64_t dim, bool keepdim = false);    // int64 indices; ties -> lowest index
double max_all(const Array& a);
// Sums a broadcast result back to `shape` (the inverse of expand): the gradient rule of broadcasting.
Array sum_to(const Array& a, const Shape& shape);

// ---- linear algebra ----
// matmul: (..., M, K) @ (..., K, N) -> (..., M, N); batch dims broadcast; 1-D operands as in NumPy.
// Transposed or otherwise strided operands are read in place (no copies). "matmul: inner dims differ: (4,3) @ (5,2)"
Array matmul(const Array& a, const Array& b);

// ---- softmax family, along `dim`, numerically stable (max subtracted) ----
Array softmax(const Array& a, int64_t dim);
Array log_softmax(const Array& a, int64_t dim);
Array softmax_backward(const Array& y, const Array& grad, int64_t dim);      // y = softmax output
Array log_softmax_backward(const Array& y, const Array& grad, int64_t dim);  // y = log_softmax output

// ---- layer norm over the last dim ----
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
// ignore_index is an error naming the row and value.
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
void embedding_backward_(Array& dweight, const Array& ids, const Array& grad);  // scatter-add rows of grad
Array index_select(const Array& a, int64_t dim, const Array& index);           // index: 1-D int64
Array concat(const std::vector<Array>& parts, int64_t dim);
// A dropout mask of `shape`: 0 with probability p, else 1/(1-p), drawn from gen.
Array dropout_mask(const Shape& shape, double p, Generator& gen, DType dtype = DType::F32);

// ---- comparisons for tests ----
double max_abs_diff(const Array& a, const Array& b);  // shapes must broadcast
bool allclose(const Array& a, const Array& b, double rtol = 1e-5, double atol = 1e-8);

}  // namespace qkvlab
