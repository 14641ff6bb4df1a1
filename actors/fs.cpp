#include "actors/fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <vector>

namespace prov::actors::fs {

namespace {

bool isMountRoot(int dirFd, const char* name) {
  struct statx stx {};
  if (::statx(dirFd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, 0, &stx) != 0) return false;
  return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

// Empties the directory open as `dirFd` (whose path is `path`).
Try<Nothing> emptyDirectory(int dirFd, const std::string& path) {
  int listFd = ::dup(dirFd);
  if (listFd < 0) return errnoError(ErrorKind::IO, "Failed to dup '" + path + "'", errno);
  DIR* dir = ::fdopendir(listFd);
  if (dir == nullptr) {
    int err = errno;
    ::close(listFd);
    return errnoError(ErrorKind::IO, "Failed to list '" + path + "'", err);
  }
  std::vector<std::pair<std::string, bool>> entries;  // name, is directory
  errno = 0;
  while (struct dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    bool isDir = entry->d_type == DT_DIR;
    if (entry->d_type == DT_UNKNOWN) {
      struct stat st;
      isDir = ::fstatat(dirFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    entries.emplace_back(std::move(name), isDir);
  }
  ::closedir(dir);

  for (const auto& [name, isDir] : entries) {
    const std::string child = path + "/" + name;
    if (!isDir) {
      if (::unlinkat(dirFd, name.c_str(), 0) != 0 && errno != ENOENT) {
        return errnoError(ErrorKind::IO, "Failed to remove '" + child + "'", errno);
      }
      continue;
    }
    if (isMountRoot(dirFd, name.c_str())) {
      return Error(ErrorKind::IO, "Failed to remove '" + child + "': it is a mount point; unmount it first");
    }
    Fd childFd(::openat(dirFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (childFd.get() < 0) return errnoError(ErrorKind::IO, "Failed to open '" + child + "'", errno);
    if (auto emptied = emptyDirectory(childFd.get(), child); emptied.isError()) return emptied;
    if (::unlinkat(dirFd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return errnoError(ErrorKind::IO, "Failed to remove '" + child + "'", errno);
    }
  }
  return Nothing{};
}

}  // namespace

Try<bool> removeTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return errnoError(ErrorKind::IO, "Failed to stat '" + path + "'", errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlink(path.c_str()) != 0) {
      return errnoError(ErrorKind::IO, "Failed to remove '" + path + "'", errno);
    }
    return true;
  }
  if (isMountRoot(AT_FDCWD, path.c_str())) {
    return Error(ErrorKind::IO, "Failed to remove '" + path + "': it is a mount point; unmount it first");
  }
  Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) return errnoError(ErrorKind::IO, "Failed to open '" + path + "'", errno);
  if (auto emptied = emptyDirectory(fd.get(), path); emptied.isError()) return emptied.error();
  if (::rmdir(path.c_str()) != 0) {
    return errnoError(ErrorKind::IO, "Failed to remove '" + path + "'", errno);
  }
  return true;
}

Try<Nothing> makeDirectories(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Error(ErrorKind::IO, "Failed to create directory '" + path + "': " + ec.message());
  return Nothing{};
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int openBeneath(int rootFd, const std::string& rel, int flags) {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  return static_cast<int>(::syscall(SYS_openat2, rootFd, rel.c_str(), &how, sizeof(how)));
}

std::vector<std::string> listDirectory(const std::string& dir, bool directoriesOnly) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (directoriesOnly) {
      struct stat st {};
      if (::fstatat(::dirfd(d), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) continue;
    }
    names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace prov::actors::fs
