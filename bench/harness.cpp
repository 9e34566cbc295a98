#include "bench/harness.h"

#include "tensor/platform.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "tensor/error.h"

namespace qkvlab::bench {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  s.lo = v.front(), s.hi = v.back(), s.n = int(n);
  return s;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<int> thread_counts(int threads) {
  if (threads > 0) return {threads};
  const int hw = std::max(1u, std::thread::hardware_concurrency());
  return hw > 1 ? std::vector<int>{1, hw} : std::vector<int>{1};
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

TempFile::TempFile() {
  std::string tmpl = "/tmp/qkvlab_bench_XXXXXX";
  const int fd = ::mkstemp(tmpl.data());
  check(fd >= 0, "bench: cannot create a temporary file in /tmp");
  ::close(fd);
  path = tmpl;
}

TempFile::~TempFile() { std::remove(path.c_str()); }

std::string TempFile::read() const {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::string run_child(const std::string& cmd, const std::string& what) {
  TempFile err;
  FILE* p = ::popen((cmd + " 2>" + shell_quote(err.path)).c_str(), "r");
  check(p != nullptr, "bench: cannot start ", what);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = ::pclose(p);
  if (status != 0) {
    std::string last;
    for (const auto& line : split(err.read(), '\n')) last = line;
    fail("bench: ", what, " failed (exit status ", WIFEXITED(status) ? WEXITSTATUS(status) : -1, ")",
         last.empty() ? "" : ": " + last, "; command: ", cmd);
  }
  return out;
}

std::string self_exe() {
  std::string path = executable_path();
  check(!path.empty(), "bench: cannot find the qkvlab program's own path");
  return path;
}

}  // namespace qkvlab::bench
