// Errors. Every user-facing error is a qkvlab::Error with a message that says what was expected and what came,
// e.g. "matmul: inner dims differ: (4,3) @ (5,2)". The command line turns it into one line on stderr and exit 2.
#pragma once
#include <iosfwd>
#include <sstream>
#include <stdexcept>
#include <string>

#include "tensor/shape.h"

namespace qkvlab {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A shape in a message prints as shape_str does, (4,3): pass the shape itself, check(ok, "got ", x.shape()), and
// it is formatted only when the check fails. (check() evaluates its arguments on every call, and a forward op
// checks shapes each time it runs: decoding one token ran shape_str about 430 times, 5 % of its time.)
std::ostream& operator<<(std::ostream& os, const Shape& shape);

// fail("add: cannot broadcast ", a.shape(), " with ", b.shape()) — concatenates its arguments and throws.
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(os.str());
}

// check(cond, parts...) — throws Error(parts...) when cond is false. Cheap when it holds, as long as the parts
// are cheap to evaluate: values and references, not strings built for the message.
template <class... Parts>
inline void check(bool cond, const Parts&... parts) {
  if (!cond) [[unlikely]] fail(parts...);
}

}  // namespace qkvlab
