#include "app/openmp_policy.h"

#include <cstdlib>
#include <string>
#include <unistd.h>

#include "tensor/platform.h"

namespace qkvlab::app {

void set_openmp_wait_policy(char** argv) {
#ifdef _OPENMP
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT") || std::getenv("KMP_BLOCKTIME")) return;
  if (other_runnable_threads() == 0) return;  // an idle machine: the runtime's own spin (see the header)
  if (::setenv("OMP_WAIT_POLICY", "PASSIVE", 0) != 0) return;  // a busy (or unknown) machine: sleep at once
  const std::string self = executable_path();
  if (!self.empty()) ::execv(self.c_str(), argv);  // returns only on failure: then run on as we are
  ::unsetenv("OMP_WAIT_POLICY");
#else
  (void)argv;
#endif
}

}  // namespace qkvlab::app
