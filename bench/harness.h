// The measuring harness of `qkvlab bench` (app/cmd_bench.cpp prints what it measures): statistics over repeated
// measurements, child processes for the yardsticks and for rows that need a fresh process, peak memory.
// One file per benchmark beside it (bench/matmul.h, train.h, decode.h, scaling.h) returns numbers only; the
// tables, JSON and messages are app/'s. docs/DESIGN.md, "Folder layout".
#pragma once
#include <string>
#include <vector>

namespace qkvlab::bench {

// Seconds on the monotonic clock.
double now_s();

// Median and range of repeated measurements (n = 0: none).
struct Stats {
  double median = 0, lo = 0, hi = 0;
  int n = 0;
};
Stats stats(std::vector<double> v);

// "a,,b" -> {"a", "b"}: the items of a separated list, empty ones dropped.
std::vector<std::string> split(const std::string& s, char sep);

// Thread counts to measure: {threads} when threads > 0, else 1 and all cores.
std::vector<int> thread_counts(int threads);

// s quoted for /bin/sh.
std::string shell_quote(const std::string& s);

// A temporary file in /tmp, removed when this goes out of scope.
struct TempFile {
  std::string path;
  TempFile();
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string read() const;
};

// Runs a shell command and returns its stdout. Its stderr is kept aside: on failure its last line goes into the
// one-line error (naming `what`), so a failing yardstick does not flood the terminal.
std::string run_child(const std::string& cmd, const std::string& what);

// The path of this program (executable_path(), tensor/platform.h), to run a row in a fresh process of itself.
std::string self_exe();

}  // namespace qkvlab::bench
