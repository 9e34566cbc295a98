// Number formatting for messages and tables, shared by every floor that prints (nn/optim's summary, bench/, app/).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace qkvlab {

// 1234567 -> "1,234,567" (and -1234 -> "-1,234")
inline std::string with_commas(int64_t n) {
  const std::string digits = std::to_string(n < 0 ? 0 - uint64_t(n) : uint64_t(n));
  std::string out = n < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// fixed(3.14159, 2) -> "3.14" (printf's %.*f)
inline std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace qkvlab
