#include "tensor/platform.h"

#include <climits>
#include <cstdlib>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>
#if defined(__APPLE__)
#include <mach-o/dyld.h>
#endif

namespace qkvlab {

std::string executable_path() {
#if defined(__APPLE__)
  uint32_t size = 0;
  _NSGetExecutablePath(nullptr, &size);  // asks for the size
  std::vector<char> buf(size + 1);
  if (_NSGetExecutablePath(buf.data(), &size) != 0) return "";
  char resolved[PATH_MAX];
  return ::realpath(buf.data(), resolved) ? std::string(resolved) : std::string(buf.data());
#elif defined(__linux__)
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
#else
  return "";
#endif
}

double peak_rss_megabytes() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
#if defined(__APPLE__)
  return double(ru.ru_maxrss) / (1024.0 * 1024.0);
#else
  return double(ru.ru_maxrss) / 1024.0;
#endif
}

}  // namespace qkvlab
