// Shapes and strides: plain vectors of int64, printed PyTorch-style as (4,3).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qkvlab {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

std::string shape_str(const Shape& s);                    // (4,3); a 0-d shape prints as ()
int64_t shape_numel(const Shape& s);                      // product of the sizes; 1 for a 0-d shape
Strides contiguous_strides(const Shape& s);               // row-major strides in elements
// Wraps a negative dim (-1 = last) and checks 0 <= dim < ndim; the message names the op.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
// NumPy broadcasting: align from the right, sizes must be equal or 1.
// "add: cannot broadcast (3,4) with (5,)"
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace qkvlab
