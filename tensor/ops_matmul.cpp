// matmul: NumPy semantics on top of one gemm_batched call (tensor/gemm.h).
//
//   (..., M, K) @ (..., K, N) -> (..., M, N)   batch dims broadcast (a broadcast dim has stride 0, so its
//                                              batch entries share one operand: offsets repeat, nothing is copied)
//   (K,) @ (..., K, N) -> (..., N)             a vector on the left is a 1 x K row, dropped from the result
//   (..., M, K) @ (K,) -> (..., M)             a vector on the right is a K x 1 column, dropped from the result
//
// Operands are passed with the strides of their last two dims, so a transposed view (x.mT()) is read in place.
//
// This file computes values only. The backward (the gradients dA = dC @ B^T, dB = A^T @ dC, and those of linear)
// is in autograd/ops_matmul.cpp: MatmulBackward and LinearBackward, each beside its forward.
#include <algorithm>
#include <vector>

#include "tensor/gemm.h"
#include "tensor/ops.h"
#include "tensor/ops_detail.h"
#include "tensor/parallel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace qkvlab {

namespace {
// off[i] = the element offset of batch entry i (row-major order over `batch`) in an array with these strides
// (its leading batch.size() strides are the batch dims').
void batch_offsets(const Shape& batch, const Strides& strides, int64_t* off) {
  const size_t nd = batch.size();
  const int64_t nb = shape_numel(batch);
  std::vector<int64_t> idx(nd, 0);
  int64_t o = 0;
  for (int64_t i = 0; i < nb; ++i) {
    off[i] = o;
    for (size_t d = nd; d-- > 0;) {  // odometer
      if (++idx[d] < batch[d]) {
        o += strides[d];
        break;
      }
      o -= strides[d] * (batch[d] - 1);
      idx[d] = 0;
    }
  }
}
}  // namespace

Array matmul(const Array& a_in, const Array& b_in) {
  const char* op = "matmul";
  detail::check_same_dtype(a_in, b_in, op);
  check(a_in.ndim() >= 1 && b_in.ndim() >= 1, op, ": both operands need at least 1 dim, got ",
        a_in.shape(), " @ ", b_in.shape());
  const bool a_vec = a_in.ndim() == 1, b_vec = b_in.ndim() == 1;
  const Array a = a_vec ? a_in.unsqueeze(0) : a_in;   // (K,) -> (1,K)
  const Array b = b_vec ? b_in.unsqueeze(1) : b_in;   // (K,) -> (K,1)
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  check(b.size(-2) == K, op, ": inner dims differ: ", a_in.shape(), " @ ", b_in.shape());

  // Batch dims: broadcast, then each operand expanded to them (stride 0 where it broadcasts).
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2), b_batch(b.shape().begin(), b.shape().end() - 2);
  Shape batch;
  try {
    batch = broadcast_shapes(a_batch, b_batch, op);
  } catch (const Error&) {
    fail(op, ": batch dims do not broadcast: ", shape_str(a_in.shape()), " @ ", shape_str(b_in.shape()));
  }
  Shape a_full = batch, b_full = batch;
  a_full.insert(a_full.end(), {M, K});
  b_full.insert(b_full.end(), {K, N});
  const Array ae = a.expand(a_full), be = b.expand(b_full);

  Shape out_shape = batch;
  if (!a_vec) out_shape.push_back(M);
  if (!b_vec) out_shape.push_back(N);
  return dispatch_float(a.dtype(), op, [&](auto z) {
    using T = decltype(z);
    Array out = Array::empty(out_shape, a.dtype());  // contiguous (..., M, N) whichever dims were dropped
    const int64_t nb = shape_numel(batch);
    if (nb == 0 || M == 0 || N == 0) return out;
    // Element offsets of each batch entry, in row-major batch order.
    std::vector<int64_t> a_off(static_cast<size_t>(nb)), b_off(static_cast<size_t>(nb)), c_off(static_cast<size_t>(nb));
    const size_t nd = batch.size();
    batch_offsets(batch, ae.strides(), a_off.data());
    batch_offsets(batch, be.strides(), b_off.data());
    for (int64_t i = 0; i < nb; ++i) c_off[i] = i * M * N;
    const size_t r = nd;  // the matrix dims of the expanded operands
    // One big product instead of nb small ones when b is the same matrix for every batch entry (a weight) and a's
    // batch and row dims are laid out as one: (..., M, K) @ (K, N) is then (nb*M, K) @ (K, N), and b is packed
    // once instead of nb times.
    bool b_shared = true;
    for (size_t d = 0; d < nd; ++d) b_shared = b_shared && (be.strides()[d] == 0 || batch[d] == 1);
    if (b_shared && nb > 1 && a.is_contiguous() && a_batch == batch) {
      gemm(nb * M, N, K, a.data<T>(), K, 1, be.data<T>(), be.strides()[r], be.strides()[r + 1], out.data<T>(), N,
           false);
      return out;
    }
    gemm_batched(nb, a_off.data(), b_off.data(), c_off.data(), M, N, K, ae.data<T>(), ae.strides()[r],
                 ae.strides()[r + 1], be.data<T>(), be.strides()[r], be.strides()[r + 1], out.data<T>(), N, false);
    return out;
  });
}

void matmul_into(Array& out, const Array& a, const Array& b) {
  const char* op = "matmul_into";
  detail::check_same_dtype(a, b, op);
  detail::check_same_dtype(out, a, op);
  check(a.ndim() >= 2 && b.ndim() >= 2, op, ": both operands need at least 2 dims, got ", a.shape(), " @ ",
        b.shape());
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  check(b.size(-2) == K, op, ": inner dims differ: ", a.shape(), " @ ", b.shape());
  const Shape batch(out.shape().begin(), out.shape().end() - std::min<size_t>(2, out.shape().size()));
  Shape a_full = batch, b_full = batch, o_full = batch;
  a_full.insert(a_full.end(), {M, K});
  b_full.insert(b_full.end(), {K, N});
  o_full.insert(o_full.end(), {M, N});
  check(out.shape() == o_full, op, ": the output ", out.shape(), " is not the product's ", o_full, " of ",
        a.shape(), " @ ", b.shape());
  check(out.strides().back() == 1 || N <= 1, op, ": the output's rows must be dense, got strides ", out.strides());
  const Array ae = a.expand(a_full), be = b.expand(b_full);
  const int64_t nb = shape_numel(batch);
  if (nb == 0 || M == 0 || N == 0) return;
  std::vector<int64_t> a_off(static_cast<size_t>(nb)), b_off(a_off.size()), c_off(a_off.size());
  batch_offsets(batch, ae.strides(), a_off.data());
  batch_offsets(batch, be.strides(), b_off.data());
  batch_offsets(batch, out.strides(), c_off.data());
  const size_t r = batch.size();
  dispatch_float(a.dtype(), op, [&](auto z) {
    using T = decltype(z);
    gemm_batched(nb, a_off.data(), b_off.data(), c_off.data(), M, N, K, ae.data<T>(), ae.strides()[r],
                 ae.strides()[r + 1], be.data<T>(), be.strides()[r], be.strides()[r + 1], out.data<T>(),
                 out.strides()[r], false);
  });
}

Array matmul_scaled(const Array& a, const Array& b, const Array& scale) {
  const char* op = "matmul_scaled";
  detail::check_same_dtype(a, b, op);
  detail::check_same_dtype(scale, a, op);
  check(a.ndim() == 2 && b.ndim() == 2, op, ": expected two matrices, got ", a.shape(), " @ ", b.shape());
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  check(b.size(0) == K, op, ": inner dims differ: ", a.shape(), " @ ", b.shape());
  check(scale.shape() == Shape{M, N}, op, ": the scale ", scale.shape(), " is not the product's (", M, ",", N, ")");
  check(scale.strides()[1] == 1 || N <= 1, op, ": the scale's rows must be dense, got strides ", scale.strides());
  return dispatch_float(a.dtype(), op, [&](auto z) {
    using T = decltype(z);
    Array out = Array::empty({M, N}, a.dtype());
    gemm(M, N, K, a.data<T>(), a.strides()[0], a.strides()[1], b.data<T>(), b.strides()[0], b.strides()[1],
         out.data<T>(), N, false, nullptr, scale.data<T>(), scale.strides()[0]);
    return out;
  });
}

Array linear(const Array& x_in, const Array& w, const Array& b) {
  const char* op = "linear";
  detail::check_same_dtype(x_in, w, op);
  check(w.ndim() == 2, op, ": the weight must be (out, in), got ", w.shape());
  check(x_in.ndim() >= 1 && x_in.size(-1) == w.size(1), op, ": input ", x_in.shape(),
        " does not end in the weight's ", w.size(1), " inputs (weight ", w.shape(), ")");
  if (b.defined()) {
    detail::check_same_dtype(x_in, b, op);
    check(b.ndim() == 1 && b.size(0) == w.size(0), op, ": bias ", b.shape(), " for ", w.size(0),
          " outputs (weight ", w.shape(), ")");
  }
  const int64_t in = w.size(1), out_features = w.size(0);
  const Array x = x_in.contiguous();  // (..., in) as (rows, in); a copy only for a strided input
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  const int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));  // every dim but the last
  return dispatch_float(x.dtype(), op, [&](auto z) {
    using T = decltype(z);
    Array out = Array::empty(out_shape, x.dtype());
    T* o = out.data<T>();
    // Every row starts as the bias, added by the GEMM as it stores the product (one pass over the output).
    const Array bc = b.defined() ? b.contiguous() : Array();
    // B(p, j) = w(j, p): the weight read transposed in place through its strides.
    gemm(rows, out_features, in, x.data<T>(), in, 1, w.data<T>(), w.strides()[1], w.strides()[0], o, out_features,
         /*accumulate=*/false, bc.defined() ? bc.data<T>() : nullptr);
    return out;
  });
}

LinearGrads linear_backward(const Array& g, const Array& x, const Array& w, const Array& scale, bool want_dx,
                            bool want_dw, bool want_db) {
  const char* op = "linear_backward";
  detail::check_defined(g, op);
  check(g.ndim() == 2, op, ": expected g of shape (rows, out), got ", g.shape());
  const int64_t rows = g.size(0), out = g.size(1);
  int64_t in = -1;
  if (want_dx) {  // needs w
    detail::check_defined(w, op);
    detail::check_same_dtype(w, g, op);
    check(w.ndim() == 2 && w.size(0) == out, op, ": w ", w.shape(), " is not (out, in) for g ", g.shape());
    in = w.size(1);
  }
  if (want_dw) {  // needs x
    detail::check_defined(x, op);
    detail::check_same_dtype(x, g, op);
    check(x.ndim() == 2 && x.size(0) == rows, op, ": g ", g.shape(), " and x ", x.shape(),
          " do not have the same rows");
    check(in < 0 || x.size(1) == in, op, ": x ", x.shape(), " and w ", w.shape(), " differ in inputs");
    in = x.size(1);
  }
  if (want_dx && scale.defined()) {
    detail::check_same_dtype(scale, g, op);
    check(scale.shape() == Shape{rows, in}, op, ": the scale ", scale.shape(), " is not dx's (", rows, ",", in, ")");
  }
  LinearGrads r;
  // In blocks of 256 rows: the block's rows of g are read by all three products (and x's by dw) while they are in
  // L2, instead of three passes over all of g from L3. With several threads, one parallel region for the whole
  // backward: in every block each thread takes its share of dx's rows, of dw's columns and of db's columns (each
  // thread owns its part of dw and db throughout, so the threads never wait for each other until the end). The
  // same bits as the three ops: rows of dx do not depend on each other; dw's sum over rows is cut where the GEMM
  // cuts it anyway (kGemmKBlock), each block added onto the ones before in order; db sums each column over the
  // rows in order in double, as sum() does. The last block takes the rest (256 to 511 rows), so that no share of
  // it is a single row, which the GEMM would sum in another order. (The demo's configuration, one thread: the
  // (2048, 64) -> 64 layer's backward 206 -> 192 us, -> 256 786 -> 710 us; on two threads, `tiny`'s and `small`'s
  // layers 0-9 % faster than the three ops, each of which forks and joins on its own.) At most 4 threads: beyond
  // that each one's share of a block (64 rows, a quarter of dw's columns) gets too thin for the GEMM.
  const int nt = std::min<int>(num_threads(), 4);
  const bool blocked = g.dtype() == DType::F32 && rows >= 2 * kGemmKBlock && g.is_contiguous() &&
                       (!want_dw || x.is_contiguous()) && (!want_dx || !scale.defined() || scale.is_contiguous());
  if (!blocked) {
    if (want_dx) r.dx = scale.defined() ? matmul_scaled(g, w, scale) : matmul(g, w);
    if (want_dw) r.dw = matmul(g.mT(), x);
    if (want_db) r.db = sum(g, {0});
    return r;
  }
  const float* G = g.data<float>();
  const float* X = want_dw ? x.data<float>() : nullptr;
  const float* W = want_dx ? w.data<float>() : nullptr;
  const float* S = want_dx && scale.defined() ? scale.data<float>() : nullptr;
  if (want_dx) r.dx = Array::empty({rows, in}, DType::F32);
  if (want_dw) r.dw = Array::empty({out, in}, DType::F32);
  float* DX = want_dx ? r.dx.data<float>() : nullptr;
  float* DW = want_dw ? r.dw.data<float>() : nullptr;
  std::vector<double> col(want_db ? size_t(out) : 0, 0.0);
  auto share = [](int64_t n, int t, int nt) { return std::pair<int64_t, int64_t>{n * t / nt, n * (t + 1) / nt}; };
  auto run = [&](int t, int nt) {  // thread t of nt; the GEMMs inside run on this thread alone
    const auto [i0, i1] = share(in, t, nt);   // dw's columns
    const auto [o0, o1] = share(out, t, nt);  // db's columns
    for (int64_t r0 = 0, r1; r0 < rows; r0 = r1) {
      r1 = rows - r0 < 2 * kGemmKBlock ? rows : r0 + kGemmKBlock;
      const auto [a, b] = share(r1 - r0, t, nt);  // dx's rows of this block: [r0 + a, r0 + b)
      if (want_dx && b > a)  // g @ w, as matmul (and matmul_scaled) call the GEMM
        gemm(b - a, in, out, G + (r0 + a) * out, out, 1, W, w.strides()[0], w.strides()[1], DX + (r0 + a) * in, in,
             false, nullptr, S ? S + (r0 + a) * in : nullptr, in);
      if (want_dw && i1 > i0)  // g^T @ x over this block's rows, added onto the blocks before
        gemm(out, i1 - i0, r1 - r0, G + r0 * out, 1, out, X + r0 * in + i0, in, 1, DW + i0, in, r0 > 0);
      if (want_db && o1 > o0) detail::add_rows(G + o0, out, o1 - o0, r0, r1, col.data() + o0);
    }
  };
#ifdef _OPENMP
  if (nt > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(nt)
    run(omp_get_thread_num(), omp_get_num_threads());
  } else {
    run(0, 1);
  }
#else
  run(0, 1);
#endif
  if (want_db) {
    r.db = Array::empty({out}, DType::F32);
    float* db = r.db.data<float>();
    for (int64_t c = 0; c < out; ++c) db[c] = static_cast<float>(col[size_t(c)]);
  }
  return r;
}

}  // namespace qkvlab
