#pragma once

#include <sys/types.h>

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
// otherwise. Where the kernel lacks openat2 (before 5.6), a walk one
// component at a time with O_NOFOLLOW, refusing ".." (EXDEV) and a change
// of device (EXDEV), does the same (a bind mount of the same file system
// is not seen there).
int openBeneath(int rootFd, const std::string& rel, int flags);

// Whether `name` (relative to dirFd, not followed) is the root of a mount.
// STATX_ATTR_MOUNT_ROOT says so from Linux 5.8; before, or when
// forceMountRootFallback(true) (for tests), its device or mount id is
// compared with its parent's.
bool isMountRoot(int dirFd, const char* name);
void forceMountRootFallback(bool force);
// Whether /proc/self/mountinfo lists `path` (absolute, as the kernel
// writes it) as a mount point: what isMountRoot asks before Linux 5.8.
bool isMountPoint(const std::string& path);

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

// removeTree() of a tree of at most `maxEntries` entries below `path`, for a
// caller that removes small trees where it stands and hands big ones on.
// Each directory's entries are counted before any of them is removed; when
// they are more than the budget has left, ResourceExhausted, and what was
// removed before stays removed (removeTree() then finishes the rest).
Try<bool> removeSmallTree(const std::string& path, std::size_t maxEntries);

// Creates `path` and its missing parents (like mkdir -p).
// dup(fd), close-on-exec (plain dup() drops the flag).
int duplicate(int fd);

// The whole of the file `path`, read through a close-on-exec descriptor
// (std::ifstream's is not). NotFound when it does not exist; IO otherwise.
Try<std::string> readFile(const std::string& path);
// The same for a file of the kernel's (/proc), read past the disk seam:
// it is not the disk, and no fault is injected there.
Try<std::string> readKernelFile(const std::string& path);

Try<Nothing> makeDirectories(const std::string& path);

// The same for a `path` whose missing levels are expected to be all those
// below `existing`, an ancestor of it that is there: they are made from the
// top down, one mkdir each, where makeDirectories first tries (and fails)
// each level from the deepest up. True when `path` was there already (and
// is a directory). When `existing` is missing, as makeDirectories.
// Trailing slashes of `path` are ignored.
Try<bool> makeDirectoriesBelow(const std::string& existing, const std::string& path);

// Makes `path` (its missing parents the usual way) with no permission bits
// beyond `mode`: made with `mode`, or narrowed to it when it was wider (an
// existing directory keeps the bits `mode` allows). A store or a work dir
// made so keeps the image content below it out of other users' reach.
Try<Nothing> makePrivateDirectory(const std::string& path, mode_t mode);

bool exists(const std::string& path);  // lstat succeeds

}  // namespace prov::actors::fs
