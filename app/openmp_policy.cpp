#include "app/openmp_policy.h"

#include <cstdlib>
#include <string>
#include <unistd.h>

#include "tensor/platform.h"

namespace qkvlab::app {

void restart_with_short_openmp_spin(char** argv) {
#ifdef _OPENMP
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT") || std::getenv("KMP_BLOCKTIME")) return;
  if (::setenv("GOMP_SPINCOUNT", "10000", 0) != 0 || ::setenv("KMP_BLOCKTIME", "0", 0) != 0) return;
  const std::string self = executable_path();
  if (!self.empty()) ::execv(self.c_str(), argv);  // returns only on failure: then run on as we are
  ::unsetenv("GOMP_SPINCOUNT");
  ::unsetenv("KMP_BLOCKTIME");
#else
  (void)argv;
#endif
}

}  // namespace qkvlab::app
