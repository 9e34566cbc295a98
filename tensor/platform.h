// The few things the operating system answers differently on Linux and macOS, behind one function each, so that
// nothing else in the tree names /proc or a Darwin call (docs/DESIGN.md, "Portability").
#pragma once
#include <string>

namespace qkvlab {

// The absolute path of the running program's executable, or "" when the system cannot tell.
// Linux: the /proc/self/exe link. macOS: _NSGetExecutablePath, then realpath. Used to start a fresh copy of the
// program (the OpenMP wait policy, `qkvlab bench`) and by the tests to find build/<mode>/qkvlab beside them.
std::string executable_path();

// How many threads besides the calling one are running or waiting for a CPU right now (other processes' and this
// process's other threads alike), or -1 when the system cannot tell. Linux: the running count in /proc/loadavg
// (it includes the caller), sampled 5 times 1 ms apart; the least of the samples less one, so a thread that is
// busy throughout counts and one that ran for a moment does not. Other systems, or a /proc/loadavg that shows no
// running task (a sandbox that fakes it): -1. The OpenMP wait policy (app/openmp_policy.h) asks it at start-up.
int other_runnable_threads();

// The most resident memory this process has had, in MB (getrusage: KB on Linux, bytes on macOS).
double peak_rss_megabytes();

}  // namespace qkvlab
