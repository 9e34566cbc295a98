#include "app/openmp_policy.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <unistd.h>

#include "tensor/parallel.h"
#include "tensor/platform.h"

namespace qkvlab::app {

namespace {

// Marks an automatic choice with the pid that made it (exec keeps the pid): see the header.
constexpr const char* kMark = "QKVLAB_OMP_AUTO";

// The thread count the command asks for, read ahead of its parser: --threads N or --threads=N, else the
// library's setting (QKVLAB_THREADS or all cores, tensor/parallel.h). Anything malformed counts as 0 (all cores)
// here; the parser, or the library, rejects it later with its own message.
int requested_threads(char** argv) {
  const char* value = nullptr;
  for (int i = 1; argv[i]; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && argv[i + 1]) value = argv[i + 1];
    else if (std::strncmp(argv[i], "--threads=", 10) == 0) value = argv[i] + 10;
  }
  if (!value) {
    try {
      return num_threads();
    } catch (const std::exception&) {
      return 0;
    }
  }
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  return *value != '\0' && *end == '\0' && n >= 1 && n <= 1024 ? int(n) : 0;
}

}  // namespace

void set_openmp_wait_policy(char** argv) {
#ifdef _OPENMP
  // This process restarted with its own choice, or a child of a qkvlab that chose (a worker of `qkvlab bench`):
  // the choice stands, and the runtime loaded with it.
  if (std::getenv(kMark)) return;
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT") || std::getenv("KMP_BLOCKTIME")) return;
  const int threads = requested_threads(argv);
  if (threads == 1) return;  // no thread ever waits for another
  const int cores = std::max(1, int(std::thread::hardware_concurrency()));
  const int spare = cores - (threads > 0 ? std::min(threads, cores) : cores);  // cores this command leaves free
  const int others = other_runnable_threads();
  if (others >= 0 && others <= spare) {  // idle: the runtime's own spin, as it loaded; children keep it too
    ::setenv(kMark, "spin", 1);
    return;
  }
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);  // sleep at once
  ::setenv(kMark, std::to_string(::getpid()).c_str(), 1);
  // Restart so that the runtime loads with PASSIVE.
  const std::string self = executable_path();
  if (!self.empty()) ::execv(self.c_str(), argv);  // returns only on failure: then run on as we are
  ::unsetenv("OMP_WAIT_POLICY");
  ::unsetenv(kMark);
#else
  (void)argv;
#endif
}

}  // namespace qkvlab::app
