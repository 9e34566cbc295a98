#include "tensor/array.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <limits>
#include <numeric>
#include <ostream>
#include <sstream>

#include "tensor/allocator.h"
#include "tensor/iter.h"
#include "tensor/parallel.h"

namespace qkvlab {

// ---------------------------------------------------------------- Storage

namespace {
std::atomic<int64_t> g_live_storages{0};
std::atomic<int64_t> g_live_bytes{0};
std::atomic<int64_t> g_peak_bytes{0};
}  // namespace

Storage::Storage(size_t bytes) : bytes_(bytes) {
  data_ = allocate_block(bytes);  // tensor/allocator.h: malloc for small blocks, a reusing page pool for big ones
  g_live_storages++;
  const int64_t live = g_live_bytes += static_cast<int64_t>(bytes);
  int64_t peak = g_peak_bytes.load(std::memory_order_relaxed);
  while (live > peak && !g_peak_bytes.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

Storage::~Storage() {
  free_block(data_, bytes_);
  g_live_storages--;
  g_live_bytes -= static_cast<int64_t>(bytes_);
}

int64_t Storage::live_count() { return g_live_storages.load(); }
int64_t Storage::live_bytes() { return g_live_bytes.load(); }
int64_t Storage::peak_bytes() { return g_peak_bytes.load(); }
void Storage::reset_peak() { g_peak_bytes = g_live_bytes.load(); }

// ---------------------------------------------------------------- creation

Array::Array(std::shared_ptr<Storage> storage, Shape shape, Strides strides, int64_t offset, DType dtype)
    : storage_(std::move(storage)), shape_(std::move(shape)), strides_(std::move(strides)), offset_(offset),
      dtype_(dtype) {}

Array Array::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape)
    if (d < 0) fail("empty: negative size in shape ", shape_str(shape));
  int64_t n = shape_numel(shape);
  auto st = std::make_shared<Storage>(static_cast<size_t>(n) * dtype_size(dtype));
  return Array(std::move(st), shape, contiguous_strides(shape), 0, dtype);
}

Array Array::zeros(const Shape& shape, DType dtype) {
  Array a = empty(shape, dtype);
  std::memset(a.storage_->data(), 0, a.storage_->bytes());
  return a;
}

Array Array::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Array Array::full(const Shape& shape, double value, DType dtype) {
  Array a = empty(shape, dtype);
  a.fill_(value);
  return a;
}

Array Array::scalar(double value, DType dtype) { return full({}, value, dtype); }

Array Array::arange(int64_t n, DType dtype) {
  check(n >= 0, "arange: expected n >= 0, got ", n);
  Array a = empty({n}, dtype);
  dispatch_all(dtype, [&](auto z) {
    using T = decltype(z);
    T* p = a.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(i);
  });
  return a;
}

namespace {
template <class T>
Array from_vec(const std::vector<T>& v, const Shape& shape) {
  check(static_cast<int64_t>(v.size()) == shape_numel(shape), "from_vector: ", v.size(),
        " values do not fill shape ", shape);
  Array a = Array::empty(shape, dtype_of<T>());
  if (!v.empty()) std::memcpy(a.data<T>(), v.data(), v.size() * sizeof(T));
  return a;
}
}  // namespace

Array Array::from_vector(const std::vector<float>& v, const Shape& shape) { return from_vec(v, shape); }
Array Array::from_vector(const std::vector<double>& v, const Shape& shape) { return from_vec(v, shape); }
Array Array::from_vector(const std::vector<int64_t>& v, const Shape& shape) { return from_vec(v, shape); }

Array Array::uniform(const Shape& shape, Generator& gen, double lo, double hi, DType dtype) {
  Array a = empty(shape, dtype);
  dispatch_float(dtype, "uniform", [&](auto z) {
    using T = decltype(z);
    T* p = a.data<T>();
    // A double just below hi can round up to hi in float32: keep the promise of [lo, hi).
    const T top = hi > lo ? std::nextafter(static_cast<T>(hi), static_cast<T>(lo)) : static_cast<T>(hi);
    for (int64_t i = 0, n = a.numel(); i < n; ++i) {
      T v = static_cast<T>(gen.uniform(lo, hi));
      p[i] = (hi > lo && v >= static_cast<T>(hi)) ? top : v;
    }
  });
  return a;
}

Array Array::normal(const Shape& shape, Generator& gen, double mean, double std, DType dtype) {
  Array a = empty(shape, dtype);
  dispatch_float(dtype, "normal", [&](auto z) {
    using T = decltype(z);
    T* p = a.data<T>();
    for (int64_t i = 0, n = a.numel(); i < n; ++i) p[i] = static_cast<T>(gen.normal(mean, std));
  });
  return a;
}

// ---------------------------------------------------------------- metadata

int64_t Array::size(int64_t dim) const { return shape_[wrap_dim(dim, ndim(), "size")]; }
int64_t Array::stride(int64_t dim) const { return strides_[wrap_dim(dim, ndim(), "stride")]; }

bool Array::is_contiguous() const {
  if (numel() == 0) return true;  // (checked first: a size-0 dim anywhere makes any strides contiguous)
  int64_t expect = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expect) return false;
    expect *= shape_[i];
  }
  return true;
}

// ---------------------------------------------------------------- element access

namespace {
int64_t element_offset(const Array& a, const std::vector<int64_t>& index, const char* op) {
  check(static_cast<int64_t>(index.size()) == a.ndim(), op, ": expected ", a.ndim(), " indices for shape ",
        a.shape(), ", got ", index.size());
  int64_t off = 0;
  for (size_t d = 0; d < index.size(); ++d) {
    int64_t i = index[d] < 0 ? index[d] + a.shape()[d] : index[d];
    check(i >= 0 && i < a.shape()[d], op, ": index ", index[d], " is out of range for dim ", d, " of size ",
          a.shape()[d]);
    off += i * a.strides()[d];
  }
  return off;
}
}  // namespace

double Array::at(const std::vector<int64_t>& index) const {
  int64_t off = element_offset(*this, index, "at");
  return dispatch_all(dtype_, [&](auto z) -> double { return static_cast<double>(data<decltype(z)>()[off]); });
}

void Array::set(const std::vector<int64_t>& index, double value) {
  int64_t off = element_offset(*this, index, "set");
  dispatch_all(dtype_, [&](auto z) { data<decltype(z)>()[off] = static_cast<decltype(z)>(value); });
}

double Array::item() const {
  check(defined(), "item: the array is undefined");
  check(numel() == 1, "item: expected a tensor with one element, got shape ", shape_);
  return dispatch_all(dtype_, [&](auto z) -> double {
    using T = decltype(z);
    T v{};
    strided_loop<1>(shape_, {&strides_}, [&](auto off, int64_t, auto) { v = data<T>()[off[0]]; });
    return static_cast<double>(v);
  });
}

std::vector<double> Array::to_vector() const {
  std::vector<double> out;
  out.reserve(static_cast<size_t>(numel()));
  if (!defined()) return out;
  dispatch_all(dtype_, [&](auto z) {
    using T = decltype(z);
    const T* p = data<T>();
    strided_loop<1>(shape_, {&strides_}, [&](auto off, int64_t n, auto inner) {
      for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<double>(p[off[0] + i * inner[0]]));
    });
  });
  return out;
}

std::vector<float> Array::to_floats() const {
  std::vector<double> v = to_vector();
  return std::vector<float>(v.begin(), v.end());
}

std::vector<int64_t> Array::to_ints() const {
  check(dtype_ == DType::I64, "to_ints: expected an int64 array, got ", dtype_name(dtype_));
  std::vector<int64_t> out;  // read the typed data directly: a double cannot hold every int64
  out.reserve(static_cast<size_t>(numel()));
  const int64_t* base = data<int64_t>();
  strided_loop<1>(shape_, {&strides_}, [&](auto off, int64_t n, auto inner) {
    for (int64_t i = 0; i < n; ++i) out.push_back(base[off[0] + i * inner[0]]);
  });
  return out;
}

// ---------------------------------------------------------------- views

Array Array::as_strided(const Shape& shape, const Strides& strides, int64_t offset) const {
  check(defined(), "as_strided: the array is undefined");
  if (shape.size() != strides.size())
    fail("as_strided: shape ", shape_str(shape), " and strides ", shape_str(strides), " differ in length");
  // Every reachable element must lie inside the storage.
  int64_t lo = offset, hi = offset;
  bool empty_view = false;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0) fail("as_strided: negative size in ", shape_str(shape));
    if (shape[d] == 0) empty_view = true;
    int64_t span = (shape[d] - 1) * strides[d];
    if (span < 0) lo += span; else hi += span;
  }
  int64_t capacity = static_cast<int64_t>(storage_->bytes() / dtype_size(dtype_));
  if (!empty_view && (lo < 0 || hi >= capacity))
    fail("as_strided: view ", shape_str(shape), " strides ", shape_str(strides), " offset ", offset,
         " reaches outside storage of ", capacity, " elements");
  return Array(storage_, shape, strides, offset, dtype_);
}

namespace {
// Resolves one -1 in a requested shape and checks the element count.
Shape infer_shape(Shape shape, int64_t numel, const char* op, const Shape& from) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) fail(op, ": only one dim may be -1, got ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      if (shape[i] < 0) fail(op, ": invalid size ", shape[i], " in ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0)
      fail(op, ": cannot infer -1 in ", shape_str(shape), " for ", shape_str(from), " (", numel, " elements)");
    shape[infer] = numel / known;
  }
  if (shape_numel(shape) != numel)
    fail(op, ": shape ", shape_str(shape), " is invalid for ", shape_str(from), " (", numel, " elements)");
  return shape;
}

// Strides for viewing (shape, strides) as new_shape without a copy, or empty if impossible.
// Walks chunks of old dims that are contiguous among themselves and splits them into new dims.
bool view_strides(const Shape& shape, const Strides& strides, const Shape& new_shape, Strides& out) {
  out.assign(new_shape.size(), 0);
  if (shape.empty()) {  // a 0-d array: its one element can take any all-1 shape (numel was checked)
    out.assign(new_shape.size(), 1);
    return true;
  }
  if (shape_numel(shape) == 0) {
    out = contiguous_strides(new_shape);
    return true;
  }
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    // At the start of a chunk (or the end of the dims), map view dims onto it.
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}
}  // namespace

Array Array::view(Shape shape) const {
  check(defined(), "view: the array is undefined");
  shape = infer_shape(std::move(shape), numel(), "view", shape_);
  Strides st;
  check(view_strides(shape_, strides_, shape, st), "view: cannot view ", shape_, " with strides ",
        strides_, " as ", shape, " without a copy; use reshape");
  return Array(storage_, shape, st, offset_, dtype_);
}

Array Array::reshape(Shape shape) const {
  check(defined(), "reshape: the array is undefined");
  shape = infer_shape(std::move(shape), numel(), "reshape", shape_);
  Strides st;
  if (view_strides(shape_, strides_, shape, st)) return Array(storage_, shape, st, offset_, dtype_);
  return contiguous().view(shape);
}

Array Array::permute(const std::vector<int64_t>& dims) const {
  check(static_cast<int64_t>(dims.size()) == ndim(), "permute: expected ", ndim(), " dims for shape ",
        shape_, ", got ", dims);
  Shape sh(dims.size());
  Strides st(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], ndim(), "permute");
    check(!seen[d], "permute: dim ", dims[i], " appears twice in ", dims);
    seen[d] = true;
    sh[i] = shape_[d];
    st[i] = strides_[d];
  }
  return Array(storage_, sh, st, offset_, dtype_);
}

Array Array::transpose(int64_t d0, int64_t d1) const {
  d0 = wrap_dim(d0, ndim(), "transpose");
  d1 = wrap_dim(d1, ndim(), "transpose");
  Shape sh = shape_;
  Strides st = strides_;
  std::swap(sh[d0], sh[d1]);
  std::swap(st[d0], st[d1]);
  return Array(storage_, sh, st, offset_, dtype_);
}

Array Array::narrow(int64_t dim, int64_t start, int64_t length) const {
  dim = wrap_dim(dim, ndim(), "narrow");
  const int64_t n = shape_[dim];
  check(start >= -n && start <= n, "narrow: start ", start, " is out of range for dim ", dim, " of size ", n);
  if (start < 0) start += n;  // as in PyTorch, a negative start counts from the end
  check(length >= 0 && length <= n - start, "narrow: length ", length, " from start ", start,
        " is out of range for dim ", dim, " of size ", n);
  Shape sh = shape_;
  sh[dim] = length;
  return Array(storage_, sh, strides_, offset_ + start * strides_[dim], dtype_);
}

Array Array::slice(int64_t dim, int64_t start, int64_t end, int64_t step) const {
  dim = wrap_dim(dim, ndim(), "slice");
  check(step > 0, "slice: step must be positive, got ", step);
  int64_t n = shape_[dim];
  // Python semantics: negative indices count from the end; out-of-range bounds are clamped.
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sh = shape_;
  Strides st = strides_;
  sh[dim] = end > start ? (end - start - 1) / step + 1 : 0;  // ceil((end-start)/step) without overflow
  st[dim] = strides_[dim] * step;
  return Array(storage_, sh, st, offset_ + start * strides_[dim], dtype_);
}

Array Array::select(int64_t dim, int64_t index) const {
  dim = wrap_dim(dim, ndim(), "select");
  int64_t i = index < 0 ? index + shape_[dim] : index;
  check(i >= 0 && i < shape_[dim], "select: index ", index, " is out of range for dim ", dim, " of size ",
        shape_[dim]);
  Shape sh = shape_;
  Strides st = strides_;
  sh.erase(sh.begin() + dim);
  st.erase(st.begin() + dim);
  return Array(storage_, sh, st, offset_ + i * strides_[dim], dtype_);
}

Array Array::expand(const Shape& shape) const {
  if (shape.size() < shape_.size())
    fail("expand: cannot expand ", shape_str(shape_), " to fewer dims ", shape_str(shape));
  size_t lead = shape.size() - shape_.size();
  Shape sh(shape.size());
  Strides st(shape.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      if (shape[i] < 0) fail("expand: invalid size ", shape[i], " in ", shape_str(shape));
      sh[i] = shape[i];
      continue;
    }
    int64_t have = shape_[i - lead];
    int64_t want = shape[i] == -1 ? have : shape[i];
    if (want < 0) fail("expand: invalid size ", shape[i], " in ", shape_str(shape));
    if (have == want) {
      sh[i] = have;
      st[i] = strides_[i - lead];
    } else {
      if (have != 1)
        fail("expand: cannot expand ", shape_str(shape_), " to ", shape_str(shape), " (dim ", i, " has size ", have,
             ", not 1)");
      sh[i] = want;
    }
  }
  return Array(storage_, sh, st, offset_, dtype_);
}

Array Array::unsqueeze(int64_t dim) const {
  dim = wrap_dim(dim, ndim() + 1, "unsqueeze");
  Shape sh = shape_;
  Strides st = strides_;
  int64_t s = dim < ndim() ? strides_[dim] * shape_[dim] : 1;
  sh.insert(sh.begin() + dim, 1);
  st.insert(st.begin() + dim, s);
  return Array(storage_, sh, st, offset_, dtype_);
}

Array Array::squeeze(int64_t dim) const {
  dim = wrap_dim(dim, ndim(), "squeeze");
  check(shape_[dim] == 1, "squeeze: dim ", dim, " of ", shape_, " has size ", shape_[dim], ", not 1");
  Shape sh = shape_;
  Strides st = strides_;
  sh.erase(sh.begin() + dim);
  st.erase(st.begin() + dim);
  return Array(storage_, sh, st, offset_, dtype_);
}

Array Array::squeeze() const {
  Shape sh;
  Strides st;
  for (size_t i = 0; i < shape_.size(); ++i)
    if (shape_[i] != 1) {
      sh.push_back(shape_[i]);
      st.push_back(strides_[i]);
    }
  return Array(storage_, sh, st, offset_, dtype_);
}

// ---------------------------------------------------------------- copies

namespace {
// Copies and fills of at least this many elements are split across threads (smaller ones are not worth waking
// the thread pool for: 128K floats copy in ~20 us).
constexpr int64_t kParallelMin = int64_t{1} << 17;

// True when no two indices of the view reach the same element (so threads can write disjoint ranges).
// Sufficient test: sorted by |stride|, each dim steps past everything the smaller dims can reach.
bool non_overlapping(const Shape& shape, const Strides& strides) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (|stride|, size)
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return true;
    if (shape[d] > 1) dims.push_back({strides[d] < 0 ? -strides[d] : strides[d], shape[d]});
  }
  std::sort(dims.begin(), dims.end());
  int64_t reach = 0;  // largest offset reachable with the dims so far
  for (auto [st, n] : dims) {
    if (st <= reach) return false;
    reach += st * (n - 1);
  }
  return true;
}

// The interval [lo, hi] of storage elements a (non-empty) view can touch.
std::pair<int64_t, int64_t> extent(const Array& a) {
  int64_t lo = a.offset(), hi = a.offset();
  for (int64_t d = 0; d < a.ndim(); ++d) {
    int64_t span = (a.shape()[d] - 1) * a.strides()[d];
    if (span < 0) lo += span; else hi += span;
  }
  return {lo, hi};
}

// Runs range_fn(begin, end) over [0, total), split across threads when `parallel`.
template <class F>
void for_ranges(int64_t total, bool parallel, F&& range_fn) {
  const int64_t chunks = parallel ? std::min<int64_t>(num_threads(), total / (kParallelMin / 4) + 1) : 1;
  if (chunks <= 1) {
    range_fn(int64_t{0}, total);
    return;
  }
#pragma omp parallel for num_threads(qkvlab::num_threads()) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) range_fn(total * c / chunks, total * (c + 1) / chunks);
}
}  // namespace

void Array::copy_(const Array& src) {
  check(defined() && src.defined(), "copy_: undefined array");
  {  // src must broadcast to this shape (NumPy rules, without growing this shape)
    bool ok = src.ndim() <= ndim();
    for (int64_t i = 1; ok && i <= src.ndim(); ++i) {
      int64_t hs = src.shape_[src.ndim() - i], hd = shape_[ndim() - i];
      ok = hs == hd || hs == 1;
    }
    check(ok, "copy_: cannot broadcast src ", src.shape_, " to destination ", shape_);
  }
  const int64_t total = numel();
  if (total == 0) return;
  Array s = src.expand(shape_);
  if (shares_storage(s)) {
    // Same memory: an identical view is a no-op; an overlapping different one (x.copy_(x.mT())) would read
    // elements it has already overwritten, so read from a copy of src instead.
    if (s.dtype_ == dtype_ && s.offset_ == offset_ && s.strides_ == strides_) return;
    auto [dlo, dhi] = extent(*this);
    auto [slo, shi] = extent(s);
    if (dlo <= shi && slo <= dhi) s = src.clone().expand(shape_);
  }
  const bool parallel = total >= kParallelMin && num_threads() > 1 && non_overlapping(shape_, strides_);
  // Fast path: both packed, same type: a memcpy (split across threads when big).
  if (s.dtype_ == dtype_ && is_contiguous() && s.is_contiguous()) {
    char* d = static_cast<char*>(storage_->data()) + offset_ * dtype_size(dtype_);
    const char* p = static_cast<const char*>(s.storage_->data()) + s.offset_ * dtype_size(dtype_);
    const size_t es = dtype_size(dtype_);
    for_ranges(total, parallel, [&](int64_t b, int64_t e) { std::memcpy(d + b * es, p + b * es, (e - b) * es); });
    return;
  }
  dispatch_all(dtype_, [&](auto zd) {
    using D = decltype(zd);
    D* dst = data<D>();
    dispatch_all(s.dtype_, [&](auto zs) {
      using S = decltype(zs);
      const S* sp = s.data<S>();
      auto body = [&](auto off, int64_t n, auto inner) {
        D* d = dst + off[0];
        const S* p = sp + off[1];
        if (inner[0] == 1 && inner[1] == 1) {
          for (int64_t i = 0; i < n; ++i) d[i] = static_cast<D>(p[i]);
        } else if (inner[0] == 1 && inner[1] == 0) {
          const D v = static_cast<D>(*p);
          for (int64_t i = 0; i < n; ++i) d[i] = v;
        } else {
          for (int64_t i = 0; i < n; ++i) d[i * inner[0]] = static_cast<D>(p[i * inner[1]]);
        }
      };
      for_ranges(total, parallel, [&](int64_t b, int64_t e) {
        strided_loop_flat<2>(shape_, {&strides_, &s.strides_}, b, e, body);
      });
    });
  });
}

void Array::fill_(double value) {
  check(defined(), "fill_: the array is undefined");
  const int64_t total = numel();
  const bool parallel = total >= kParallelMin && num_threads() > 1 && non_overlapping(shape_, strides_);
  dispatch_all(dtype_, [&](auto z) {
    using T = decltype(z);
    T* p = data<T>();
    const T v = static_cast<T>(value);
    auto body = [&](auto off, int64_t n, auto inner) {
      T* q = p + off[0];
      if (inner[0] == 1) {
        std::fill(q, q + n, v);
      } else {
        for (int64_t i = 0; i < n; ++i) q[i * inner[0]] = v;
      }
    };
    for_ranges(total, parallel, [&](int64_t b, int64_t e) { strided_loop_flat<1>(shape_, {&strides_}, b, e, body); });
  });
}

Array Array::contiguous() const {
  if (!defined() || is_contiguous()) return *this;
  return clone();
}

Array Array::clone() const {
  check(defined(), "clone: the array is undefined");
  Array out = empty(shape_, dtype_);
  out.copy_(*this);
  return out;
}

Array Array::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Array out = empty(shape_, dtype);
  out.copy_(*this);
  return out;
}

// ---------------------------------------------------------------- printing

namespace {
std::string format_value(int64_t v) { return std::to_string(v); }  // exact, even beyond 2^53
std::string format_value(double v, int precision) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream os;
  os << std::setprecision(precision) << v;
  return os.str();
}
std::string format_value(float v) { return format_value(static_cast<double>(v), 5); }
std::string format_value(double v) { return format_value(v, 8); }

// Prints dim `dim` of the view whose element (idx..., 0...) is at base[off]. With edge > 0, a dim longer than
// 2*edge+1 shows its first and last `edge` entries around "..."; with edge <= 0 it shows only "...".
template <class T>
void print_values(std::ostream& os, const T* base, const Shape& shape, const Strides& strides, int64_t off,
                  size_t dim, int64_t edge, size_t indent) {
  if (shape.empty()) {
    os << format_value(base[off]);
    return;
  }
  const bool last = dim + 1 == shape.size();
  const std::string sep = last ? ", " : ",\n" + std::string(indent + 1, ' ');
  const int64_t n = shape[dim];
  os << "[";
  if (edge <= 0 && n > 0) {
    os << "...]";
    return;
  }
  const bool elide = n > 2 * edge + 1;
  for (int64_t i = 0; i < n; ++i) {
    if (elide && i == edge) {
      os << "..." << sep;
      i = n - edge - 1;
      continue;
    }
    const int64_t o = off + i * strides[dim];
    if (last) {
      os << format_value(base[o]);
    } else {
      print_values(os, base, shape, strides, o, dim + 1, edge, indent + 1);
    }
    if (i + 1 < n) os << sep;
  }
  os << "]";
}
}  // namespace

std::string Array::values_str(int64_t edge_items) const {
  if (!defined()) return "undefined";
  std::ostringstream os;
  dispatch_all(dtype_, [&](auto z) {
    using T = decltype(z);
    print_values<T>(os, data<T>(), shape_, strides_, 0, 0, edge_items, 0);
  });
  return os.str();
}

std::string Array::str(int64_t edge_items) const {
  if (!defined()) return "Array(undefined)";
  std::ostringstream os;
  os << "Array(shape=" << shape_str(shape_) << ", strides=" << shape_str(strides_);
  if (offset_) os << ", offset=" << offset_;
  os << ", " << dtype_name(dtype_) << ")\n" << values_str(edge_items);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Array& a) { return os << a.str(); }

}  // namespace qkvlab
