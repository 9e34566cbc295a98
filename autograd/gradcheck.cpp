#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace qkvlab {

namespace {
double contract(const Tensor& y, const Array& u) { return sum(mul(y.data(), u)).item(); }

std::string index_str(const std::vector<int64_t>& idx) { return shape_str(idx); }

// Advances a row-major multi-index; false when done.
bool next_index(std::vector<int64_t>& idx, const Shape& shape) {
  for (size_t d = shape.size(); d-- > 0;) {
    if (++idx[d] < shape[d]) return true;
    idx[d] = 0;
  }
  return false;
}
}  // namespace

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Array>& inputs, const std::string& label,
                          const GradcheckOptions& opt) {
  GradcheckResult res;
  std::vector<Tensor> xs;
  for (const Array& a : inputs) {
    check(a.dtype() != DType::I64, "gradcheck: ", label, ": inputs must be floating point");
    Array x = a.dtype() == DType::F64 ? a : a.to(DType::F64);
    xs.emplace_back(x, true);
  }

  // Analytic: backward of L = sum(y * u).
  Tensor y = f(xs);
  check(y.dtype() == DType::F64, "gradcheck: ", label, ": the function returned ", dtype_name(y.dtype()),
        "; every op must keep float64");
  Generator gen(opt.seed);
  Array u = Array::normal(y.shape(), gen, 0.0, 1.0, DType::F64);
  const std::string op = y.grad_fn() ? y.grad_fn()->name() : "(no op)";
  if (y.requires_grad()) y.backward(u);

  NoGradGuard no_grad;
  for (size_t i = 0; i < xs.size(); ++i) {
    Array x = xs[i].data();
    Array analytic = xs[i].grad().defined() ? xs[i].grad() : Array::zeros(x.shape(), DType::F64);
    if (x.numel() == 0) continue;
    std::vector<int64_t> idx(x.ndim(), 0);
    do {
      double orig = x.at(idx);
      x.set(idx, orig + opt.eps);
      double lp = contract(f(xs), u);
      x.set(idx, orig - opt.eps);
      double lm = contract(f(xs), u);
      x.set(idx, orig);
      double numeric = (lp - lm) / (2 * opt.eps);
      double a = analytic.at(idx);
      double err = std::abs(a - numeric);
      ++res.elements;
      if (!(err <= res.max_abs_error)) res.max_abs_error = err;  // also records NaN
      if (std::abs(numeric) > opt.atol) res.max_rel_error = std::max(res.max_rel_error, err / std::abs(numeric));
      if (res.ok && !(err <= opt.atol + opt.rtol * std::abs(numeric))) {
        res.ok = false;
        std::ostringstream os;
        os.precision(10);
        os << "gradcheck failed for " << label << " (" << op << "): input " << i << " of shape "
           << shape_str(x.shape()) << ", element " << index_str(idx) << ": analytic " << a << ", numeric "
           << numeric << " (|diff| " << err << ")";
        res.message = os.str();
      }
    } while (next_index(idx, x.shape()));
  }
  return res;
}

}  // namespace qkvlab
