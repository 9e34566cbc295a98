// tensor/platform.h: the load probe behind the OpenMP wait policy (app/openmp_policy.h). executable_path() and
// peak_rss_megabytes() are exercised by every CLI test (tests/cli_child.h) and tests/bench/test_harness.cpp.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include "tensor/platform.h"

using namespace qkvlab;

TEST_CASE("platform: other_runnable_threads counts a thread that is busy throughout", "[platform]") {
#if defined(__linux__)
  std::atomic<bool> stop{false}, started{false};
  std::thread busy([&] {
    started = true;
    while (!stop.load(std::memory_order_relaxed)) {
    }
  });
  while (!started) std::this_thread::yield();
  const int others = other_runnable_threads();  // this thread excluded, the spinning one counted
  stop = true;
  busy.join();
  if (others == -1) {  // a sandbox whose /proc/loadavg shows no running task (gVisor: "0/0")
    WARN("/proc/loadavg shows no running task here: nothing to check");
    return;
  }
  CHECK(others >= 1);
  CHECK(other_runnable_threads() >= 0);
#else
  CHECK(other_runnable_threads() == -1);  // not known here: the policy treats the machine as busy
#endif
}
