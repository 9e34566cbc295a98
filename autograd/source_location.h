// Where an op was called, for anomaly messages and graph printing: std::source_location when the standard library
// has it, otherwise the same thing built from the compiler's builtins (clang 14 with libstdc++ 12 has no
// std::source_location: libstdc++ needs __builtin_source_location, which clang only gained in version 15).
#pragma once
#include <version>

#if defined(__cpp_lib_source_location)
#include <source_location>
namespace qkvlab {
using SourceLocation = std::source_location;
}
#else
namespace qkvlab {
struct SourceLocation {
  // As a default argument, the builtins give the place of the call (gcc and clang).
  static constexpr SourceLocation current(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE(),
                                          const char* function = __builtin_FUNCTION()) noexcept {
    SourceLocation l;
    l.file_ = file;
    l.line_ = line;
    l.function_ = function;
    return l;
  }
  constexpr const char* file_name() const noexcept { return file_; }
  constexpr unsigned line() const noexcept { return line_; }
  constexpr unsigned column() const noexcept { return 0; }
  constexpr const char* function_name() const noexcept { return function_; }

 private:
  const char* file_ = "";
  unsigned line_ = 0;
  const char* function_ = "";
};
}  // namespace qkvlab
#endif
