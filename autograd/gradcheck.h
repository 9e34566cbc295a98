// gradcheck: compares the engine's gradients with central finite differences, in double precision.
//
//   auto r = gradcheck([](const std::vector<Tensor>& x) { return mul(x[0], x[1]); },
//                      {Array::normal({3, 4}, gen), Array::normal({4}, gen)}, "mul");
//   r.ok, r.max_abs_error, r.message
//
// Every input is turned into a float64 leaf (float64 inputs keep their strides, so non-contiguous views can be
// checked as they are). The output y is contracted with a random upstream gradient u, L = sum(y * u), so every
// element of every Jacobian row matters. For each input element x_i, numeric = (L(x_i + h) - L(x_i - h)) / 2h,
// compared with the analytic dL/dx_i from backward(u). Every element is checked (keep inputs small).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace qkvlab {

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step h
  double atol = 1e-6;  // pass when |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-4;
  uint64_t seed = 0;   // for the upstream gradient u
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;  // largest |analytic - numeric| over all elements
  double max_rel_error = 0.0;  // largest |analytic - numeric| / max(|numeric|, 1e-12) where |numeric| > atol
  int64_t elements = 0;        // elements checked
  std::string message;         // on failure: op, input, element, analytic and numeric values
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Array>& inputs, const std::string& label,
                          const GradcheckOptions& options = {});

}  // namespace qkvlab
