// Anomaly checks and messages, the creation backtrace, and the QKVLAB_TRACE lines (autograd/diagnostics.h).
#include "autograd/diagnostics.h"

#include <execinfo.h>
#include <cxxabi.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tensor/ops.h"

namespace qkvlab {

namespace {
double norm(const Array& a) {
  if (!a.defined()) return 0.0;
  double s = 0.0;
  for (double v : a.to_vector()) s += v * v;
  return std::sqrt(s);
}

std::string where_str(const Node& n) {
  std::string s = std::string(n.created_at.file_name()) + ":" + std::to_string(n.created_at.line()) + " in " +
                  n.created_at.function_name();
  if (!n.backtrace.empty()) s += "\n  call stack at creation:\n" + n.backtrace;
  return s;
}
}  // namespace

// The names come from dladdr (the program's dynamic symbol table: the Makefile links with -rdynamic), which reads
// the same on Linux and macOS, unlike the text of backtrace_symbols. A program without that table (a static
// build, such as the arm64 one run under qemu) gets the frames' addresses instead, for addr2line.
std::string capture_backtrace() {
  void* frames[24];
  const int n = ::backtrace(frames, 24);
  std::string out;
  int shown = 0;
  for (int i = 1; i < n && shown < 8; ++i) {
    Dl_info info{};
    const bool named = ::dladdr(frames[i], &info) != 0 && info.dli_sname != nullptr;
    if (!named) continue;  // the library's own unnamed frames (inlined record<>), above the op
    std::string fn = info.dli_sname;
    int status = 0;
    char* dem = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
    if (status == 0 && dem) fn = dem;
    std::free(dem);
    if (fn.find("qkvlab::record") != std::string::npos || fn.find("qkvlab::attach") != std::string::npos ||
        fn.find("capture_backtrace") != std::string::npos)
      continue;
    if (fn.size() > 160) fn = fn.substr(0, 157) + "...";
    out += "    " + fn + "\n";
    ++shown;
  }
  if (shown == 0)  // no symbol table: the return addresses, innermost first
    for (int i = 1; i < n && i <= 8; ++i) {
      char addr[32];
      std::snprintf(addr, sizeof addr, "%p", frames[i]);
      out += std::string("    ") + addr + "\n";
    }
  return out;
}

void check_forward_anomaly(const char* op, const Array& out, const SourceLocation& loc) {
  if (out.dtype() == DType::I64 || all_finite(out)) return;
  fail("anomaly: ", op, " produced NaN or Inf in its forward output ", shape_str(out.shape()), " (called at ",
       loc.file_name(), ":", loc.line(), " in ", loc.function_name(), ")");
}

void check_backward_anomaly(const Node& n, size_t input, const Array& grad) {
  if (all_finite(grad)) return;
  fail("anomaly: ", n.name(), " produced NaN or Inf in the gradient of its input ", input,
       " during backward; the op was created at ", where_str(n));
}

bool trace_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("QKVLAB_TRACE");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

void trace_node(const Node& n, const Array& grad_out, const std::vector<Array>& grad_in) {
  std::fprintf(stderr, "[trace] %-22s out %-14s |grad_out| %-11.5g", n.name(), shape_str(n.output_shape).c_str(),
               norm(grad_out));
  for (size_t i = 0; i < grad_in.size(); ++i) {
    if (grad_in[i].defined()) std::fprintf(stderr, "  |grad_in%zu| %.5g", i, norm(grad_in[i]));
    else std::fprintf(stderr, "  |grad_in%zu| none", i);  // that input needs no gradient
  }
  std::fprintf(stderr, "\n");
}

}  // namespace qkvlab
