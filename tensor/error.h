// Errors. Every user-facing error is a qkvlab::Error with a message that says what was expected and what came,
// e.g. "matmul: inner dims differ: (4,3) @ (5,2)". The command line turns it into one line on stderr and exit 2.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace qkvlab {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// fail("add: cannot broadcast ", shape_str(a), " with ", shape_str(b)) — concatenates its arguments and throws.
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(os.str());
}

// check(cond, parts...) — throws Error(parts...) when cond is false. Cheap when it holds.
template <class... Parts>
inline void check(bool cond, const Parts&... parts) {
  if (!cond) [[unlikely]] fail(parts...);
}

}  // namespace qkvlab
