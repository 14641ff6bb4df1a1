#pragma once

// Child processes for bench_pull: spawned with posix_spawn, their output
// going to a log file, timed from spawn to exit, reaped with wait4 for their
// rusage, killed after a timeout. Also the SIGINT/SIGTERM/SIGHUP handling
// that lets the driver stop between steps and clean up (unmount, detach,
// stop daemons) by unwinding: an interrupted wait kills its child and
// throws Interrupted.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace prov::bench::pull {

// Thrown when a signal asked the driver to stop.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// Installs the handlers (no SA_RESTART, so blocking waits return EINTR) and
// ignores SIGPIPE in the driver (children get the default back).
void installSignalHandlers();
bool interruptRequested();
// Throws Interrupted when a signal came.
void checkInterrupted();

struct ProcessResult {
  int status = -1;  // exit status, or -1 when killed by a signal
  int signal = 0;   // the signal that killed it
  bool timedOut = false;
  double seconds = 0;  // from just before spawn to the exit
  long maxRssKib = 0;  // wait4's ru_maxrss (see pull_bench.cpp on what it includes)
  bool ok() const { return status == 0 && !timedOut; }
  std::string describe() const;  // "exit 2", "killed by signal 9", "timed out"
};

// Starts argv (argv[0] searched in PATH unless it holds a '/') with stdin
// from /dev/null and stdout+stderr appended to `log`. Throws on failure.
pid_t spawnLogged(const std::vector<std::string>& argv, const std::filesystem::path& log);

// Starts argv with stdin from `stdinFd` (which the child gets alone: the
// caller closes its copy), stdout truncated into `out` and stderr appended
// to `log`. Throws on failure.
pid_t spawnFilter(const std::vector<std::string>& argv, int stdinFd, const std::filesystem::path& out,
                  const std::filesystem::path& log);

// Waits for `pid` for up to `timeout` (killing it with SIGKILL after that),
// reaps it and fills the rusage fields; `start` is when it was spawned.
ProcessResult waitTimed(pid_t pid, std::chrono::steady_clock::time_point start, std::chrono::seconds timeout);

// spawnLogged + waitTimed.
ProcessResult runLogged(const std::vector<std::string>& argv, const std::filesystem::path& log,
                        std::chrono::seconds timeout);

// Runs argv to completion and returns its stdout+stderr; throws
// std::runtime_error "Failed to run '<argv>': <status>: <output>" unless it
// exits 0.
std::string mustRun(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(600));

// Like mustRun but returns the exit status and fills `output`.
int tryRun(const std::vector<std::string>& argv, std::string& output,
           std::chrono::seconds timeout = std::chrono::seconds(600));

// The last `bytes` of a file, for error messages.
std::string tailOf(const std::filesystem::path& path, std::size_t bytes = 2000);

std::string joinArgs(const std::vector<std::string>& argv);

}  // namespace prov::bench::pull
