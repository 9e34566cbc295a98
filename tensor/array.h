// Array: a raw strided N-d tensor. Storage is shared; shape, strides and offset say how to read it.
// Views (view/reshape, permute/transpose, narrow/slice, expand, unsqueeze/squeeze, select) share storage and
// copy nothing; contiguous() copies only when needed. Arrays know nothing of gradients (that is autograd/).
//
//   element (i0, i1, ..., ik) lives at storage[offset + i0*strides[0] + ... + ik*strides[k]]
//
// An expanded (broadcast) dim has stride 0, so one element serves every index along it.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/random.h"
#include "tensor/shape.h"

namespace qkvlab {

// A 64-byte aligned block of memory. Never resized; views hold it through a shared_ptr.
class Storage {
 public:
  explicit Storage(size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  static int64_t live_count();  // Storages alive now (for leak tests)
  static int64_t live_bytes();
  static int64_t peak_bytes();  // the most bytes alive at once since the start or the last reset_peak()
  static void reset_peak();

 private:
  void* data_;
  size_t bytes_;
};

class Array {
 public:
  Array() = default;  // an undefined Array: no storage, defined() is false

  // ---- creation (all return contiguous arrays) ----
  static Array empty(const Shape& shape, DType dtype = DType::F32);  // uninitialised
  static Array zeros(const Shape& shape, DType dtype = DType::F32);
  static Array ones(const Shape& shape, DType dtype = DType::F32);
  static Array full(const Shape& shape, double value, DType dtype = DType::F32);
  static Array scalar(double value, DType dtype = DType::F32);  // 0-d
  static Array arange(int64_t n, DType dtype = DType::F32);     // 0, 1, ..., n-1
  static Array from_vector(const std::vector<float>& v, const Shape& shape);
  static Array from_vector(const std::vector<double>& v, const Shape& shape);
  static Array from_vector(const std::vector<int64_t>& v, const Shape& shape);
  static Array uniform(const Shape& shape, Generator& gen, double lo = 0.0, double hi = 1.0,
                       DType dtype = DType::F32);
  static Array normal(const Shape& shape, Generator& gen, double mean = 0.0, double std = 1.0,
                      DType dtype = DType::F32);

  // ---- metadata ----
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Strides& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  DType dtype() const { return dtype_; }
  int64_t ndim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  int64_t size(int64_t dim) const;    // negative dims count from the end
  int64_t stride(int64_t dim) const;
  bool is_contiguous() const;         // row-major with no gaps (size-1 dims may have any stride)
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool shares_storage(const Array& other) const { return storage_ && storage_ == other.storage_; }

  // Pointer to element (0,...,0); T must match dtype() ("data<float>: the array is float64").
  template <class T> T* data() const;

  // ---- element access (slow; for tests, printing and small bookkeeping) ----
  double item() const;                                   // the one element of a 1-element array
  double at(const std::vector<int64_t>& index) const;    // bounds-checked, negative indices allowed
  void set(const std::vector<int64_t>& index, double value);
  std::vector<double> to_vector() const;                 // all elements in row-major order
  std::vector<float> to_floats() const;
  std::vector<int64_t> to_ints() const;

  // ---- views: share storage, copy nothing ----
  Array view(Shape shape) const;      // needs strides compatible with the new shape; one size may be -1
  Array reshape(Shape shape) const;   // a view when possible, else a contiguous copy
  Array flatten() const { return reshape({numel()}); }
  Array permute(const std::vector<int64_t>& dims) const;
  Array transpose(int64_t d0, int64_t d1) const;
  Array mT() const { return transpose(-2, -1); }         // swap the last two dims
  Array narrow(int64_t dim, int64_t start, int64_t length) const;
  Array slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;  // Python-style start:end:step
  Array select(int64_t dim, int64_t index) const;        // drops dim
  Array expand(const Shape& shape) const;                // size-1 dims -> stride 0; new leading dims allowed
  Array unsqueeze(int64_t dim) const;
  Array squeeze(int64_t dim) const;                      // dim must have size 1
  Array squeeze() const;                                 // every size-1 dim
  Array as_strided(const Shape& shape, const Strides& strides, int64_t offset) const;  // checked against storage

  // ---- copies ----
  Array contiguous() const;           // *this if already contiguous (shares storage), else a packed copy
  Array clone() const;                // always a fresh contiguous copy
  Array to(DType dtype) const;        // converted copy (or *this when dtype matches)
  void copy_(const Array& src);       // writes src into this view; src broadcasts to this shape; dtypes convert
  void fill_(double value);

  // ---- printing ----
  // "Array(shape=(2,3), strides=(3,1), float32)\n[[...]]"; the middle of big dims is elided with "...".
  std::string str(int64_t edge_items = 3) const;
  std::string values_str(int64_t edge_items = 3) const;  // only the bracketed values

 private:
  Array(std::shared_ptr<Storage> storage, Shape shape, Strides strides, int64_t offset, DType dtype);
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Strides strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::F32;
};

std::ostream& operator<<(std::ostream& os, const Array& a);

template <class T>
T* Array::data() const {
  check(defined(), "data: the array is undefined");
  check(dtype_ == dtype_of<T>(), "data<", dtype_name(dtype_of<T>()), ">: the array is ", dtype_name(dtype_));
  return static_cast<T*>(storage_->data()) + offset_;
}

}  // namespace qkvlab
