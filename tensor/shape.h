// Shapes and strides: lists of int64 sizes, printed PyTorch-style as (4,3).
//
// Dims is std::vector<int64_t>'s interface (the part this project uses) with up to kInline values held inside the
// object: every array carries a shape and strides, and most ops make several arrays (views, outputs, broadcast
// operands), so with std::vector a decoding step of `small` made ~1,600 heap allocations, nearly all of them
// shape and stride lists of 1-5 values, and malloc/free were ~14 % of its time (docs/PERFORMANCE.md). Longer lists
// (rare: only arrays of more than kInline dims) go to the heap as before. Converts to and from std::vector<int64_t>.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

namespace qkvlab {

class Dims {
 public:
  static constexpr size_t kInline = 6;
  using value_type = int64_t;
  using size_type = size_t;
  using difference_type = std::ptrdiff_t;
  using reference = int64_t&;
  using const_reference = const int64_t&;
  using pointer = int64_t*;
  using const_pointer = const int64_t*;
  using iterator = int64_t*;
  using const_iterator = const int64_t*;

  Dims() = default;
  explicit Dims(size_t n, int64_t value = 0) { assign(n, value); }
  Dims(std::initializer_list<int64_t> values) { assign(values.begin(), values.end()); }
  template <class It, class = typename std::iterator_traits<It>::iterator_category>
  Dims(It first, It last) { assign(first, last); }
  Dims(const std::vector<int64_t>& v) { assign(v.begin(), v.end()); }  // NOLINT: converts, as a vector would copy
  Dims(const Dims& o) { assign(o.begin(), o.end()); }
  Dims(Dims&& o) noexcept { take(o); }
  Dims& operator=(const Dims& o) {
    if (this != &o) assign(o.begin(), o.end());
    return *this;
  }
  Dims& operator=(Dims&& o) noexcept {
    if (this != &o) {
      release();
      take(o);
    }
    return *this;
  }
  Dims& operator=(std::initializer_list<int64_t> values) {
    assign(values.begin(), values.end());
    return *this;
  }
  ~Dims() { release(); }
  operator std::vector<int64_t>() const { return std::vector<int64_t>(begin(), end()); }  // NOLINT

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return cap_; }
  int64_t* data() { return data_; }
  const int64_t* data() const { return data_; }
  iterator begin() { return data_; }
  iterator end() { return data_ + size_; }
  const_iterator begin() const { return data_; }
  const_iterator end() const { return data_ + size_; }
  int64_t& operator[](size_t i) { return data_[i]; }
  const int64_t& operator[](size_t i) const { return data_[i]; }
  int64_t& back() { return data_[size_ - 1]; }
  const int64_t& back() const { return data_[size_ - 1]; }

  void reserve(size_t n) {
    if (n <= cap_) return;
    int64_t* p = new int64_t[n];
    std::copy(begin(), end(), p);
    release();
    data_ = p;
    cap_ = n;
  }
  void clear() { size_ = 0; }
  void resize(size_t n, int64_t value = 0) {
    reserve(n);
    if (n > size_) std::fill(data_ + size_, data_ + n, value);
    size_ = n;
  }
  void assign(size_t n, int64_t value) {
    clear();
    resize(n, value);
  }
  template <class It>
  void assign(It first, It last) {
    const size_t n = size_t(std::distance(first, last));
    clear();
    reserve(n);
    std::copy(first, last, data_);
    size_ = n;
  }
  void push_back(int64_t v) {
    if (size_ == cap_) reserve(2 * cap_);
    data_[size_++] = v;
  }
  void pop_back() { --size_; }

  // insert and erase as std::vector's: the returned iterator points at the first inserted / the element after
  // the erased ones.
  iterator insert(const_iterator pos, int64_t v) { return insert(pos, size_t(1), v); }
  iterator insert(const_iterator pos, size_t n, int64_t v) {
    const size_t at = open(pos, n);
    std::fill(data_ + at, data_ + at + n, v);
    return data_ + at;
  }
  template <class It, class = typename std::iterator_traits<It>::iterator_category>
  iterator insert(const_iterator pos, It first, It last) {
    const Dims copy(first, last);  // the range may lie inside *this, which open() moves
    const size_t at = open(pos, copy.size());
    std::copy(copy.begin(), copy.end(), data_ + at);
    return data_ + at;
  }
  iterator insert(const_iterator pos, std::initializer_list<int64_t> values) {
    return insert(pos, values.begin(), values.end());
  }
  iterator erase(const_iterator pos) { return erase(pos, pos + 1); }
  iterator erase(const_iterator first, const_iterator last) {
    int64_t* f = data_ + (first - data_);
    std::copy(last, const_iterator(end()), f);
    size_ -= size_t(last - first);
    return f;
  }

  friend bool operator==(const Dims& a, const Dims& b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }
  friend bool operator!=(const Dims& a, const Dims& b) { return !(a == b); }
  friend bool operator<(const Dims& a, const Dims& b) {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
  }
  friend bool operator==(const Dims& a, const std::vector<int64_t>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
  }
  friend bool operator!=(const Dims& a, const std::vector<int64_t>& b) { return !(a == b); }

 private:
  // Makes room for n values at pos (moving the tail up) and returns the index of the first.
  size_t open(const_iterator pos, size_t n) {
    const size_t at = size_t(pos - data_);
    if (size_ + n > cap_) reserve(std::max(size_ + n, 2 * cap_));
    std::copy_backward(data_ + at, data_ + size_, data_ + size_ + n);
    size_ += n;
    return at;
  }
  void release() {
    if (data_ != inline_) delete[] data_;
    data_ = inline_;
    cap_ = kInline;
  }
  void take(Dims& o) {  // *this holds no heap block
    if (o.data_ == o.inline_) {
      std::copy(o.begin(), o.end(), inline_);
    } else {
      data_ = o.data_;
      cap_ = o.cap_;
      o.data_ = o.inline_;
      o.cap_ = kInline;
    }
    size_ = o.size_;
    o.size_ = 0;
  }

  int64_t inline_[kInline];
  int64_t* data_ = inline_;
  size_t size_ = 0;
  size_t cap_ = kInline;
};

using Shape = Dims;
using Strides = Dims;


std::string shape_str(const Shape& s);                    // (4,3); a 0-d shape prints as ()
int64_t shape_numel(const Shape& s);                      // product of the sizes; 1 for a 0-d shape
Strides contiguous_strides(const Shape& s);               // row-major strides in elements
// Wraps a negative dim (-1 = last) and checks 0 <= dim < ndim; the message names the op.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
// NumPy broadcasting: align from the right, sizes must be equal or 1.
// "add: cannot broadcast (3,4) with (5,)"
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace qkvlab
