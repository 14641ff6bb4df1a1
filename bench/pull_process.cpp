#include "bench/pull_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

extern char** environ;

namespace prov::bench::pull {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {

volatile sig_atomic_t interruptSignal = 0;

void onSignal(int signal) { interruptSignal = signal; }

}  // namespace

void installSignalHandlers() {
  struct sigaction action {};
  action.sa_handler = onSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: poll() in waitTimed returns EINTR
  for (int s : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(s, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

bool interruptRequested() { return interruptSignal != 0; }

void checkInterrupted() {
  if (interruptRequested()) throw Interrupted();
}

std::string ProcessResult::describe() const {
  if (timedOut) return "timed out";
  if (signal != 0) return std::string("killed by signal ") + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
  return "exit " + std::to_string(status);
}

std::string joinArgs(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

namespace {

// stdin from `stdinFd` (or /dev/null when negative), stdout to `out`
// (appended or truncated), stderr to `log` (appended; empty: with stdout).
pid_t spawnWith(const std::vector<std::string>& argv, int stdinFd, const fs::path& out, bool append,
                const fs::path& log) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (stdinFd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, stdinFd, 0);
    posix_spawn_file_actions_addclose(&actions, stdinFd);
  } else {
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
  if (log.empty()) {
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  }
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);  // the driver ignores it; children must not inherit that
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &actions, &attributes, args.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    throw std::runtime_error("Failed to run '" + joinArgs(argv) + "': " + std::strerror(rc));
  }
  return pid;
}

}  // namespace

pid_t spawnLogged(const std::vector<std::string>& argv, const fs::path& log) {
  return spawnWith(argv, -1, log, true, {});
}

pid_t spawnFilter(const std::vector<std::string>& argv, int stdinFd, const fs::path& out, const fs::path& log) {
  return spawnWith(argv, stdinFd, out, false, log);
}

ProcessResult waitTimed(pid_t pid, SteadyClock::time_point start, std::chrono::seconds timeout) {
  ProcessResult result;
  // glibc 2.36 declares pidfd_open without extern "C"; call the kernel directly.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  const auto deadline = start + timeout;
  bool interrupted = false;
  while (pidfd >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0) {
      result.timedOut = true;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd p{pidfd, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (n > 0) break;
    if (n < 0 && errno == EINTR && interruptRequested()) {
      interrupted = true;
      ::kill(pid, SIGTERM);
      break;
    }
  }
  if (pidfd >= 0) ::close(pidfd);
  int status = 0;
  rusage usage{};
  if (interrupted) {
    // Give it a few seconds to go, then force it.
    for (int i = 0; i < 50 && ::wait4(pid, &status, WNOHANG, &usage) == 0; ++i) ::usleep(100000);
    if (::kill(pid, 0) == 0) {
      ::kill(pid, SIGKILL);
      ::wait4(pid, &status, 0, &usage);
    }
    throw Interrupted();
  }
  while (::wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  result.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  result.maxRssKib = usage.ru_maxrss;
  if (WIFEXITED(status)) result.status = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

ProcessResult runLogged(const std::vector<std::string>& argv, const fs::path& log, std::chrono::seconds timeout) {
  const auto start = SteadyClock::now();
  const pid_t pid = spawnLogged(argv, log);
  return waitTimed(pid, start, timeout);
}

int tryRun(const std::vector<std::string>& argv, std::string& output, std::chrono::seconds timeout) {
  char name[] = "/tmp/bench-pull-command-XXXXXX";
  const int fd = ::mkstemp(name);
  if (fd < 0) throw std::runtime_error(std::string("Failed to create a temporary file: ") + std::strerror(errno));
  ::close(fd);
  ProcessResult result;
  try {
    result = runLogged(argv, name, timeout);
  } catch (...) {
    ::unlink(name);
    throw;
  }
  output = tailOf(name, 1 << 20);
  ::unlink(name);
  return result.ok() ? 0 : (result.status > 0 ? result.status : 255);
}

std::string mustRun(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  std::string output;
  const int status = tryRun(argv, output, timeout);
  if (status != 0) {
    throw std::runtime_error("Failed to run '" + joinArgs(argv) + "': exit " + std::to_string(status) + ": " + output);
  }
  return output;
}

std::string tailOf(const fs::path& path, std::size_t bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::size_t>(in.tellg());
  in.seekg(static_cast<std::streamoff>(size > bytes ? size - bytes : 0));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace prov::bench::pull
