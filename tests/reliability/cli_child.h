// Runs the qkvlab program of this build (build/<mode>/qkvlab, beside the test binary) as a child process, for the
// reliability tests: exit status, stdout, stderr, and one extra environment variable if asked (fault injection).
#pragma once
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern char** environ;

namespace qkvlab::testing {

inline std::string slurp_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

struct CliResult {
  int status = -1;  // exit status; -signal when killed by a signal
  std::string out, err;
  int err_lines() const { return int(std::count(err.begin(), err.end(), '\n')); }
};

inline std::string qkvlab_program() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  REQUIRE(!ec);
  std::string bin = (self.parent_path() / "qkvlab").string();
  INFO("expected the program at " << bin << " (make builds it)");
  REQUIRE(::access(bin.c_str(), X_OK) == 0);
  return bin;
}

// qkvlab args..., run in `dir` (its stdout/stderr go to files there), one kernel thread unless the args say
// otherwise, plus `extra_env` ("NAME=value") when given.
inline CliResult run_cli(const std::vector<std::string>& args, const std::string& dir,
                         const std::string& extra_env = "") {
  static const std::string bin = qkvlab_program();
  static int counter = 0;
  const std::string io = dir + "/cli" + std::to_string(counter++);
  std::vector<std::string> argv_s{bin};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    if (kv.rfind("QKVLAB_THREADS=", 0) != 0 && kv.rfind("QKVLAB_FAULT_INJECT=", 0) != 0) env_s.push_back(kv);
  }
  if (extra_env.rfind("QKVLAB_THREADS=", 0) != 0) env_s.push_back("QKVLAB_THREADS=1");
  if (!extra_env.empty()) env_s.push_back(extra_env);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  int out = ::open((io + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = ::open((io + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(out >= 0);
  REQUIRE(err >= 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::chdir(dir.c_str()) != 0) _exit(126);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execve(bin.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  ::close(out);
  ::close(err);
  int ws = 0;
  REQUIRE(::waitpid(pid, &ws, 0) == pid);
  CliResult r;
  r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? -WTERMSIG(ws) : -1000;
  r.out = slurp_file(io + ".out");
  r.err = slurp_file(io + ".err");
  std::filesystem::remove(io + ".out");
  std::filesystem::remove(io + ".err");
  return r;
}

}  // namespace qkvlab::testing
