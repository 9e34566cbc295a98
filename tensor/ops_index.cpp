// Indexing kernels: embedding (gather rows) and its scatter-add backward, index_select, concat, dropout masks.
//
// Ids are validated up front, on one thread, so that a bad id is a clean error ("embedding: id 70 at position 3
// is out of range for 65 rows") and never a throw from inside an OpenMP region.
#include <cmath>

#include "tensor/ops.h"
#include "tensor/ops_detail.h"

namespace qkvlab {

using detail::check_defined;
using detail::check_same_dtype;

namespace {

// The ids in row-major order, each checked against [0, rows).
std::vector<int64_t> checked_ids(const Array& ids, int64_t rows, const char* op) {
  check_defined(ids, op);
  check(ids.dtype() == DType::I64, op, ": expected int64 ids, got ", dtype_name(ids.dtype()));
  std::vector<int64_t> v = ids.to_ints();
  for (size_t i = 0; i < v.size(); ++i)
    check(v[i] >= 0 && v[i] < rows, op, ": id ", v[i], " at position ", i, " is out of range for ", rows, " rows");
  return v;
}

void check_table(const Array& w, const char* op, const char* name) {
  check_defined(w, op);
  check(w.ndim() == 2, op, ": expected ", name, " of shape (V,C), got ", w.shape());
}

}  // namespace

Array embedding(const Array& weight, const Array& ids) {
  const char* op = "embedding";
  check_table(weight, op, "weight");
  const std::vector<int64_t> id = checked_ids(ids, weight.shape()[0], op);
  const int64_t c = weight.shape()[1], n = static_cast<int64_t>(id.size());
  Shape shape = ids.shape();
  shape.push_back(c);
  return dispatch_float(weight.dtype(), op, [&](auto z) {
    using T = decltype(z);
    Array out = Array::empty(shape, weight.dtype());
    const T* w = weight.data<T>();
    T* o = out.data<T>();
    const int64_t s0 = weight.strides()[0], s1 = weight.strides()[1];
    // (n ids) x (C): copy row id[k] of the table into output row k.
#pragma omp parallel for num_threads(num_threads()) schedule(static) if (n * c > 2 * detail::kGrain)
    for (int64_t k = 0; k < n; ++k) {
      const T* src = w + id[k] * s0;
      T* dst = o + k * c;
      if (s1 == 1) {
        for (int64_t j = 0; j < c; ++j) dst[j] = src[j];
      } else {
        for (int64_t j = 0; j < c; ++j) dst[j] = src[j * s1];
      }
    }
    return out;
  });
}

void embedding_backward_(Array& dweight, const Array& ids, const Array& grad) {
  const char* op = "embedding_backward_";
  check_table(dweight, op, "dweight");
  check_same_dtype(dweight, grad, op);
  const int64_t v = dweight.shape()[0], c = dweight.shape()[1];
  Shape want = ids.defined() ? ids.shape() : Shape{};
  want.push_back(c);
  check(grad.shape() == want, op, ": expected grad of shape ", want, " for ids ",
        ids.shape(), " and dweight ", dweight.shape(), ", got ", grad.shape());
  for (int64_t d = 0; d < 2; ++d)
    check(dweight.strides()[d] != 0 || dweight.shape()[d] <= 1, op, ": dweight ", dweight.shape(),
          " is an expanded view (stride 0 on dim ", d, ")");
  const std::vector<int64_t> id = checked_ids(ids, v, op);
  const int64_t n = static_cast<int64_t>(id.size());
  dispatch_float(dweight.dtype(), op, [&](auto z) {
    using T = decltype(z);
    const Array g = grad.contiguous();  // (n, C) rows
    const T* gp = g.data<T>();
    T* w = dweight.data<T>();
    const int64_t s0 = dweight.strides()[0], s1 = dweight.strides()[1];
    // Repeated ids add into the same row, so rows cannot be split across threads; columns can: each thread owns
    // a block of columns of every row (no races, and the same sums in the same order on any thread count).
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(c / 16, n * c / detail::kGrain));
#pragma omp parallel for num_threads(num_threads()) schedule(static) if (blocks > 1)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t j0 = c * b / blocks, j1 = c * (b + 1) / blocks;
      for (int64_t k = 0; k < n; ++k) {
        T* dst = w + id[k] * s0;
        const T* src = gp + k * c;
        if (s1 == 1) {
          for (int64_t j = j0; j < j1; ++j) dst[j] += src[j];
        } else {
          for (int64_t j = j0; j < j1; ++j) dst[j * s1] += src[j];
        }
      }
    }
  });
}

Array index_select(const Array& a, int64_t dim, const Array& index) {
  const char* op = "index_select";
  check_defined(a, op);
  check_defined(index, op);
  check(index.ndim() == 1, op, ": expected a 1-D index, got shape ", index.shape());
  const int64_t d = wrap_dim(dim, a.ndim(), op);
  const std::vector<int64_t> id = checked_ids(index, a.shape()[d], op);
  Shape shape = a.shape();
  shape[d] = static_cast<int64_t>(id.size());
  Array out = Array::empty(shape, a.dtype());  // any dtype: copy_ converts nothing here
  for (size_t j = 0; j < id.size(); ++j) out.select(d, static_cast<int64_t>(j)).copy_(a.select(d, id[j]));
  return out;
}

Array concat(const std::vector<Array>& parts, int64_t dim) {
  const char* op = "concat";
  check(!parts.empty(), op, ": expected at least one array, got none");
  for (const Array& p : parts) check_defined(p, op);
  const Array& first = parts[0];
  check(first.ndim() >= 1, op, ": cannot concatenate 0-d arrays");
  const int64_t d = wrap_dim(dim, first.ndim(), op);
  Shape shape = first.shape();
  shape[d] = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Array& p = parts[i];
    check(p.dtype() == first.dtype(), op, ": part ", i, " is ", dtype_name(p.dtype()), " but part 0 is ",
          dtype_name(first.dtype()));
    bool same = p.ndim() == first.ndim();
    for (int64_t k = 0; same && k < p.ndim(); ++k) same = k == d || p.shape()[k] == first.shape()[k];
    check(same, op, ": shapes ", first.shape(), " and ", p.shape(), " (parts 0 and ", i,
          ") differ outside dim ", d);
    shape[d] += p.shape()[d];
  }
  Array out = Array::empty(shape, first.dtype());
  int64_t at = 0;
  for (const Array& p : parts) {
    const int64_t len = p.shape()[d];
    if (len > 0) out.narrow(d, at, len).copy_(p);
    at += len;
  }
  return out;
}

Array dropout_mask(const Shape& shape, double p, Generator& gen, DType dtype) {
  check(p >= 0.0 && p < 1.0, "dropout_mask: expected p in [0, 1), got ", p);
  return dispatch_float(dtype, "dropout_mask", [&](auto z) {
    using T = decltype(z);
    Array out = Array::empty(shape, dtype);
    T* o = out.data<T>();
    const T keep = static_cast<T>(1.0 / (1.0 - p));
    // One uniform per element, in row-major order: the same mask for the same seed everywhere.
    for (int64_t i = 0, n = out.numel(); i < n; ++i) o[i] = gen.uniform() < p ? T(0) : keep;
    return out;
  });
}

}  // namespace qkvlab
