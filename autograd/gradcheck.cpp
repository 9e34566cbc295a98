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
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Array& a = inputs[i];
    check(a.defined(), "gradcheck: ", label, ": input ", i, " is undefined");
    check(a.dtype() != DType::I64, "gradcheck: ", label, ": input ", i, " is int64; inputs must be floating point");
    // Each element is perturbed in place, so an element must not be reachable twice (an expanded view with a
    // stride-0 dim), nor be shared with another input: the perturbation would move several "independent" inputs.
    for (int64_t d = 0; d < a.ndim(); ++d)
      check(a.size(d) <= 1 || a.stride(d) != 0, "gradcheck: ", label, ": input ", i, " of shape ",
            a.shape(), " is an expanded view (stride 0 on dim ", d,
            "); pass a copy (clone()) and let the function expand it");
    for (size_t j = 0; j < i; ++j)
      check(!(a.dtype() == DType::F64 && inputs[j].dtype() == DType::F64 && a.shares_storage(inputs[j])),
            "gradcheck: ", label, ": inputs ", j, " and ", i, " share storage; pass a copy (clone()) of one");
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
  const double l0 = contract(y, u);
  if (y.requires_grad()) y.backward(u);

  NoGradGuard no_grad;
  // Finite differences assume f is a function: the same inputs must give the same output (a dropout inside f
  // needs a generator seeded inside f, not one shared across calls).
  const double l1 = contract(f(xs), u);
  // (A relative tolerance, not ==: a threaded kernel may sum in a different order.)
  check(std::abs(l0 - l1) <= 1e-10 * (1.0 + std::abs(l0)) || (std::isnan(l0) && std::isnan(l1)), "gradcheck: ", label,
        ": the function is not deterministic (two calls on the same inputs gave ", l0, " and ", l1,
        "); seed any generator inside the function");
  for (size_t i = 0; i < xs.size(); ++i) {
    Array x = xs[i].data();
    Array analytic = xs[i].grad().defined() ? xs[i].grad() : Array::zeros(x.shape(), DType::F64);
    if (x.numel() == 0) continue;
    std::vector<int64_t> idx(x.ndim(), 0);
    do {
      double orig = x.at(idx);
      Array yp, ym;
      try {
        x.set(idx, orig + opt.eps);
        yp = f(xs).data().clone();  // clone: a view op returns a view of x, which the next set() moves
        x.set(idx, orig - opt.eps);
        ym = f(xs).data().clone();
      } catch (...) {
        x.set(idx, orig);  // float64 inputs are the caller's arrays: leave them as they came
        throw;
      }
      x.set(idx, orig);
      // Difference the outputs before contracting with u: large constant outputs (a -1e9 mask fill) then cancel
      // exactly instead of swamping the difference in rounding error.
      double numeric = sum(mul(sub(yp, ym), u)).item() / (2 * opt.eps);
      double a = analytic.at(idx);
      double err = std::abs(a - numeric);
      ++res.elements;
      // A NaN error sticks (NaN compares false with everything, so test it explicitly).
      if (!std::isnan(res.max_abs_error) && !(err <= res.max_abs_error)) res.max_abs_error = err;
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
