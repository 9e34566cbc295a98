#include "tensor/platform.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <thread>
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

int other_runnable_threads() {
#if defined(__linux__)
  int least = INT_MAX;
  for (int sample = 0; sample < 5; ++sample) {
    if (sample > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::FILE* f = std::fopen("/proc/loadavg", "r");
    if (!f) return -1;
    double avg1, avg5, avg15;
    int running = 0, total = 0;
    const int got = std::fscanf(f, "%lf %lf %lf %d/%d", &avg1, &avg5, &avg15, &running, &total);
    std::fclose(f);
    if (got != 5 || running < 1) return -1;
    least = std::min(least, running - 1);  // the count includes this thread, which is running as it reads
  }
  return least;
#else
  return -1;
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
