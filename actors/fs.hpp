#pragma once

// File-system helpers shared by the components above the runtime. Blocking:
// call them from the blocking pool (async), never on a strand.

#include <string>
#include <utility>
#include <vector>

#include "actors/error.hpp"

namespace prov::actors::fs {

// An owned file descriptor, closed on destruction; movable.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset();
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_;
};

// openat2(rootFd, rel, flags | O_CLOEXEC) resolved beneath rootFd without
// following any symlink, magic link or mount crossing; -1 with errno set
// otherwise (ENOSYS where the kernel lacks openat2).
int openBeneath(int rootFd, const std::string& rel, int flags);

// The names in `dir` (no "." or ".."), sorted; with `directoriesOnly`, only
// the entries that are directories (not symlinks to them). Empty when `dir`
// cannot be read.
std::vector<std::string> listDirectory(const std::string& dir, bool directoriesOnly = false);

// Removes `path` and everything below it. Never follows a symbolic link and
// never descends into another mount: a mount point below `path` fails the
// call (ErrorKind::IO, naming the mount point) before anything under it is
// touched, so a bind mount left inside a rootfs cannot take host files with
// it. Returns true when something was removed, false when `path` did not
// exist.
Try<bool> removeTree(const std::string& path);

// Creates `path` and its missing parents (like mkdir -p).
Try<Nothing> makeDirectories(const std::string& path);

bool exists(const std::string& path);  // lstat succeeds

}  // namespace prov::actors::fs
