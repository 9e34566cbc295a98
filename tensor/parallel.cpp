#include "tensor/parallel.h"

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace qkvlab {

namespace {
int initial_threads() {
  if (const char* env = std::getenv("QKVLAB_THREADS"); env && *env) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (*end != '\0' || n < 1 || n > 1024)
      throw std::invalid_argument(std::string("QKVLAB_THREADS: expected a whole number >= 1, got '") + env + "'");
    return static_cast<int>(n);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

int& thread_setting() {
  static int n = [] {
    int t = initial_threads();
#ifdef _OPENMP
    omp_set_num_threads(t);
#endif
    return t;
  }();
  return n;
}
}  // namespace

int num_threads() {
  const int n = thread_setting();  // also without OpenMP, so that a bad QKVLAB_THREADS is an error in every build
#ifdef _OPENMP
  return n;
#else
  (void)n;
  return 1;
#endif
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("threads: expected a number >= 1, got " + std::to_string(n));
  thread_setting() = n;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace qkvlab
