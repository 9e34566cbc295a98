// Runs the qkvlab program of this build (build/<mode>/qkvlab, beside the test binary) as a child process, for the
// CLI tests: exit status, stdout, stderr, and one extra environment variable if asked (fault injection).
#pragma once
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/platform.h"

extern char** environ;

namespace qkvlab::testing {

inline std::string slurp_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// step -> training loss of every logged line of a run's metrics.jsonl.
inline std::map<int64_t, double> logged_losses(const std::string& dir) {
  std::map<int64_t, double> out;
  std::istringstream in(slurp_file(dir + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  return out;
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
  const std::filesystem::path self = qkvlab::executable_path();
  REQUIRE(!self.empty());
  std::string bin = (self.parent_path() / "qkvlab").string();
  INFO("expected the program at " << bin << " (make builds it)");
  REQUIRE(::access(bin.c_str(), X_OK) == 0);
  return bin;
}

// A running qkvlab: its pid and the files its stdout and stderr go to.
struct CliChild {
  pid_t pid = -1;
  std::string out_path, err_path;
};

// Starts qkvlab args... in `dir`, stdout/stderr into io_prefix.out/.err, one kernel thread unless `extra_env` sets
// QKVLAB_THREADS, plus `extra_env` ("NAME=value") when given. The child starts with SIGINT at its default and no
// signals blocked, so a test can interrupt it as a terminal would.
inline CliChild spawn_cli(const std::vector<std::string>& args, const std::string& dir, const std::string& io_prefix,
                          const std::string& extra_env = "") {
  static const std::string bin = qkvlab_program();
  CliChild c;
  c.out_path = io_prefix + ".out";
  c.err_path = io_prefix + ".err";
  // Everything the child needs is built before fork (only async-signal-safe calls after it).
  // QKVLAB_TEST_EXEC_PREFIX ("/usr/bin/qemu-aarch64-static"; the first word an absolute path): the words the
  // program is started through, for a cross-built test binary run under an emulator without binfmt_misc.
  std::vector<std::string> argv_s;
  if (const char* prefix = std::getenv("QKVLAB_TEST_EXEC_PREFIX")) {
    std::istringstream words(prefix);
    for (std::string w; words >> w;) argv_s.push_back(w);
  }
  argv_s.push_back(bin);
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
  int out = ::open(c.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = ::open(c.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(out >= 0);
  REQUIRE(err >= 0);
  c.pid = ::fork();
  REQUIRE(c.pid >= 0);
  if (c.pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGINT, SIG_DFL);
    if (::chdir(dir.c_str()) != 0) _exit(126);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execve(argv_s[0].c_str(), argv.data(), envp.data());
    _exit(127);
  }
  ::close(out);
  ::close(err);
  return c;
}

// Waits for the child and reads what it printed.
inline CliResult finish_cli(const CliChild& c) {
  int ws = 0;
  REQUIRE(::waitpid(c.pid, &ws, 0) == c.pid);
  CliResult r;
  r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? -WTERMSIG(ws) : -1000;
  r.out = slurp_file(c.out_path);
  r.err = slurp_file(c.err_path);
  return r;
}

// qkvlab args..., run to the end in `dir`; its output files are removed afterwards.
inline CliResult run_cli(const std::vector<std::string>& args, const std::string& dir,
                         const std::string& extra_env = "") {
  static int counter = 0;
  CliChild c = spawn_cli(args, dir, dir + "/cli" + std::to_string(counter++), extra_env);
  CliResult r = finish_cli(c);
  std::filesystem::remove(c.out_path);
  std::filesystem::remove(c.err_path);
  return r;
}

}  // namespace qkvlab::testing
