// The gradcheck suite: one or more finite-difference cases for every differentiable op in autograd/ops.h,
// run by `qkvlab gradcheck` (one row per case) and by tests/autograd/test_gradcheck_suite.cpp (every case must pass).
//
//   for (const GradcheckRow& r : run_gradcheck_suite("matmul"))   // filter: a substring of op or case name
//     std::printf("%-14s %-40s %s %.2e\n", r.op.c_str(), r.name.c_str(), r.ok ? "ok" : "FAIL", r.max_abs_error);
//
// Inputs are small float64 arrays with random shapes' worth of variety: broadcasting operands, and
// non-contiguous views (transposed, strided slices) that gradcheck perturbs in place, so each op is also checked
// on strided data. Inputs stay away from the points where an op is not differentiable (relu at 0, ties in max,
// log/sqrt at 0): central differences straddling a kink would disagree with any subgradient.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"

namespace qkvlab {

struct GradcheckCase {
  std::string op;             // the autograd op under test, as named in autograd/ops.h ("matmul")
  std::string name;           // what this case covers ("batched (2,3,4) @ broadcast (4,5)")
  std::vector<Array> inputs;  // float64; may be non-contiguous views
  GradcheckFn fn;             // builds the output from leaves made of `inputs` (in that order)
  GradcheckOptions options = {};
};

// Every case, built from a fixed seed (the same inputs on every machine).
std::vector<GradcheckCase> gradcheck_cases(uint64_t seed = 1234);

// The names of the ops the suite covers (each appears in at least one case), in ops.h order.
std::vector<std::string> gradcheck_op_names();

struct GradcheckRow {
  std::string op;
  std::string name;
  bool ok = false;
  double max_abs_error = 0.0;
  double max_rel_error = 0.0;
  int64_t elements = 0;
  std::string message;  // on failure: gradcheck's message, or the exception the case threw
};

// Runs the cases whose op or name contains `filter` (all when empty). A case that throws is a failed row whose
// message is the exception text; the suite itself never throws for a failing case.
std::vector<GradcheckRow> run_gradcheck_suite(const std::string& filter = "", uint64_t seed = 1234);
// The same over any list of cases (for a program's own ops, or tests).
std::vector<GradcheckRow> run_gradcheck_cases(const std::vector<GradcheckCase>& cases, const std::string& filter = "");

}  // namespace qkvlab
