// Element types. Models run in float32; gradcheck runs the same code in float64 (see autograd/gradcheck.h):
// every kernel is a template over the element type, and dispatch() picks the instantiation at run time,
// as PyTorch does with .double(). int64 holds indices (token ids, targets, argmax) and supports only
// creation, views, copies, printing and the index kernels.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "tensor/error.h"

namespace qkvlab {

enum class DType : uint8_t { F32, F64, I64 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::I64: return "int64";
  }
  return "?";
}

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 8; }

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }

// dispatch_float(dtype, "op", [&](auto zero) { using T = decltype(zero); ... }) runs the lambda with T = float
// or double; an int64 tensor gets "op: expected a floating-point tensor, got int64".
template <class F>
decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  if (t == DType::F32) return f(float{});
  if (t == DType::F64) return f(double{});
  fail(op, ": expected a floating-point tensor, got ", dtype_name(t));
}

// dispatch_all: the same, for kernels that also make sense on int64 (copies, printing, comparisons).
template <class F>
decltype(auto) dispatch_all(DType t, F&& f) {
  if (t == DType::F32) return f(float{});
  if (t == DType::F64) return f(double{});
  return f(int64_t{});
}

}  // namespace qkvlab
