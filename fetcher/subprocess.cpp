#include "fetcher/subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>

extern char** environ;

namespace prov::fetcher {

namespace {

// Closes what it holds on every path out.
struct Descriptor {
  int fd = -1;
  ~Descriptor() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

// `program` in PATH's absolute directories: a relative entry ("." or
// empty) would run whatever sits in the agent's current directory.
std::string findInPath(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  std::string_view rest = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    if (dir.empty() || dir.front() != '/') continue;
    std::string candidate = std::string(dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

int remainingMs(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<long long>(0, left.count()));
}

}  // namespace

Try<SubprocessResult> runSubprocess(const std::vector<std::string>& argv, std::string_view input,
                                    std::chrono::milliseconds timeout, std::size_t maxOutput) {
  if (argv.empty()) return Error(ErrorKind::InvalidArgument, "No program to run");
  const std::string& program = argv[0];
  auto ioError = [&](const char* what, int error) {
    return Error(ErrorKind::IO, "Failed to run '" + program + "': " + what + ": " + std::strerror(error));
  };
  // stdin a socket, so that writing to a helper that exited is EPIPE with
  // MSG_NOSIGNAL instead of a SIGPIPE for the whole agent.
  int in[2], out[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) return ioError("socketpair", errno);
  Descriptor inParent{in[0]}, inChild{in[1]};
  if (::pipe2(out, O_CLOEXEC) != 0) return ioError("pipe", errno);
  Descriptor outParent{out[0]}, outChild{out[1]};

  SpawnSetup setup;
  posix_spawn_file_actions_adddup2(&setup.actions, inChild.fd, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&setup.actions, outChild.fd, STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&setup.actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigmask(&setup.attr, &none);
  posix_spawnattr_setsigdefault(&setup.attr, &defaults);
  posix_spawnattr_setpgroup(&setup.attr, 0);
  posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string found = findInPath(program);
  if (found.empty()) return Error(ErrorKind::NotFound, "'" + program + "' is not installed (not found in PATH)");
  pid_t pid = -1;
  const int spawned = ::posix_spawn(&pid, found.c_str(), &setup.actions, &setup.attr, args.data(), environ);
  if (spawned == ENOENT || spawned == EACCES) {
    return Error(ErrorKind::NotFound, "'" + program + "' is not installed (not found in PATH)");
  }
  if (spawned != 0) return ioError("posix_spawn", spawned);
  inChild.reset();
  outChild.reset();

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  SubprocessResult result;
  // The input is a line or two: it fits the socket's buffer, so one send
  // that does not wait is enough; a helper that does not read it simply
  // does not get it.
  if (!input.empty()) (void)::send(inParent.fd, input.data(), input.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(inParent.fd, SHUT_WR);
  inParent.reset();

  char buffer[4096];
  for (;;) {
    pollfd p{outParent.fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, remainingMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      result.timedOut = true;
      break;
    }
    const ssize_t n = ::read(outParent.fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // end of output
    const std::size_t room = maxOutput - std::min(maxOutput, result.output.size());
    result.output.append(buffer, std::min(room, static_cast<std::size_t>(n)));
  }
  outParent.reset();

  // Its exit, by its own pid: polled until the deadline, then the group killed.
  int status = 0;
  auto pause = std::chrono::milliseconds(1);
  if (result.timedOut) ::kill(-pid, SIGKILL);
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, result.timedOut ? 0 : WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno == EINTR) continue;
    if (done < 0) return ioError("waitpid", errno);
    if (std::chrono::steady_clock::now() >= deadline) {
      result.timedOut = true;
      ::kill(-pid, SIGKILL);
      continue;  // the blocking wait above reaps it
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace prov::fetcher
