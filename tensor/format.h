// Number formatting for messages and tables, shared by every floor that prints (nn/optim's summary, bench/, app/).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace qkvlab {

// 1234567 -> "1,234,567" (and -1234 -> "-1,234")
inline std::string with_commas(int64_t n) {
  std::string s = std::to_string(n < 0 ? -n : n);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return n < 0 ? "-" + s : s;
}

// fixed(3.14159, 2) -> "3.14" (printf's %.*f)
inline std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace qkvlab
