#include "actors/fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <optional>
#include <string_view>
#include <vector>

#include "actors/disk.hpp"

namespace prov::actors::fs {

namespace {

// Empties the directory open as `dirFd` (whose path is `path`). With a
// `budget`, each directory's entries are counted against it as they are
// read, before any is removed: ResourceExhausted as soon as they are more
// than is left (a huge directory is not read to its end).
Try<Nothing> emptyDirectory(int dirFd, const std::string& path, std::size_t* budget) {
  int listFd = duplicate(dirFd);
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
    if (budget && entries.size() >= *budget) {  // one more than it allows: no need to read on
      ::closedir(dir);
      return Error(ErrorKind::ResourceExhausted, "'" + path + "' holds more entries than the removal's budget");
    }
    bool isDir = entry->d_type == DT_DIR;
    if (entry->d_type == DT_UNKNOWN) {
      struct stat st;
      isDir = ::fstatat(dirFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    entries.emplace_back(std::move(name), isDir);
  }
  ::closedir(dir);
  if (budget) *budget -= entries.size();  // at most what was left

  for (const auto& [name, isDir] : entries) {
    const std::string child = path + "/" + name;
    if (!isDir) {
      if (disk().unlinkat(dirFd, name.c_str(), 0) != 0 && errno != ENOENT) {
        return errnoError(ErrorKind::IO, "Failed to remove '" + child + "'", errno);
      }
      continue;
    }
    if (isMountRoot(dirFd, name.c_str())) {
      return Error(ErrorKind::IO, "Failed to remove '" + child + "': it is a mount point; unmount it first");
    }
    Fd childFd(disk().openat(dirFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (childFd.get() < 0) return errnoError(ErrorKind::IO, "Failed to open '" + child + "'", errno);
    if (auto emptied = emptyDirectory(childFd.get(), child, budget); emptied.isError()) return emptied;
    if (disk().unlinkat(dirFd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return errnoError(ErrorKind::IO, "Failed to remove '" + child + "'", errno);
    }
  }
  return Nothing{};
}

Try<bool> removeTreeWithin(const std::string& path, std::size_t* budget) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return errnoError(ErrorKind::IO, "Failed to stat '" + path + "'", errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (disk().unlinkat(AT_FDCWD, path.c_str(), 0) != 0) {
      return errnoError(ErrorKind::IO, "Failed to remove '" + path + "'", errno);
    }
    return true;
  }
  if (isMountRoot(AT_FDCWD, path.c_str())) {
    return Error(ErrorKind::IO, "Failed to remove '" + path + "': it is a mount point; unmount it first");
  }
  // ENOENT below: someone else removed it meanwhile, which is what was asked.
  Fd fd(disk().openat(AT_FDCWD, path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0 && errno == ENOENT) return false;
  if (fd.get() < 0) return errnoError(ErrorKind::IO, "Failed to open '" + path + "'", errno);
  if (auto emptied = emptyDirectory(fd.get(), path, budget); emptied.isError()) return emptied.error();
  if (disk().unlinkat(AT_FDCWD, path.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return errnoError(ErrorKind::IO, "Failed to remove '" + path + "'", errno);
  }
  return true;
}

}  // namespace

Try<bool> removeTree(const std::string& path) { return removeTreeWithin(path, nullptr); }

Try<bool> removeSmallTree(const std::string& path, std::size_t maxEntries) {
  std::size_t budget = maxEntries;
  return removeTreeWithin(path, &budget);
}

int duplicate(int fd) { return ::fcntl(fd, F_DUPFD_CLOEXEC, 0); }

namespace {

Try<std::string> readAll(const std::string& path, Disk& via) {
  Fd fd(via.openat(AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC, 0));
  if (!fd.valid()) {
    const int err = errno;
    return errnoError(err == ENOENT ? ErrorKind::NotFound : ErrorKind::IO, "Failed to open '" + path + "'", err);
  }
  std::string content;
  char buffer[65536];
  for (;;) {
    const ssize_t n = via.read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoError(ErrorKind::IO, "Failed to read '" + path + "'", errno);
    if (n == 0) return content;
    content.append(buffer, static_cast<std::size_t>(n));
  }
}

}  // namespace

Try<std::string> readFile(const std::string& path) { return readAll(path, disk()); }

Try<std::string> readKernelFile(const std::string& path) {
  static Disk kernel;  // the default: straight to the kernel
  return readAll(path, kernel);
}

namespace {

// `path` made with `mode` (its missing parents with 0777, less the umask).
// When it was there already, `existing` (if given) gets its mode.
Try<Nothing> makeDirectory(const std::string& path, mode_t mode, std::optional<mode_t>* existing) {
  if (disk().mkdirat(AT_FDCWD, path.c_str(), mode) == 0) return Nothing{};
  int err = errno;
  const auto slash = path.find_last_of('/', path.find_last_not_of('/'));
  if (err == ENOENT && slash != std::string::npos && slash != 0) {  // the parent first
    if (auto parent = makeDirectory(path.substr(0, slash), 0777, nullptr); parent.isError()) return parent;
    if (disk().mkdirat(AT_FDCWD, path.c_str(), mode) == 0) return Nothing{};
    err = errno;
  }
  struct stat st;
  if (err == EEXIST && ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    if (existing) *existing = st.st_mode & 07777;
    return Nothing{};
  }
  return errnoError(ErrorKind::IO, "Failed to create directory '" + path + "'", err == EEXIST ? ENOTDIR : err);
}

}  // namespace

Try<Nothing> makeDirectories(const std::string& path) {
  if (path.empty()) return Nothing{};
  return makeDirectory(path, 0777, nullptr);
}

Try<bool> makeDirectoriesBelow(const std::string& existing, const std::string& given) {
  std::string path = given;
  while (path.size() > 1 && path.back() == '/') path.pop_back();  // "a/b/" is "a/b"
  if (path.size() <= existing.size() + 1 || path.compare(0, existing.size(), existing) != 0 ||
      path[existing.size()] != '/') {
    return Error(ErrorKind::InvalidArgument, "'" + given + "' is not below '" + existing + "'");
  }
  std::string level = path;  // cut short at each '/' in turn
  const std::size_t first = path.find('/', existing.size() + 1);
  for (std::size_t end = first;; end = path.find('/', end + 1)) {
    const bool last = end == std::string::npos;
    if (!last) level[end] = '\0';
    const int err = disk().mkdirat(AT_FDCWD, level.c_str(), 0777) == 0 ? 0 : errno;
    if (!last) level[end] = '/';
    if (err == ENOENT && end == first) {  // `existing` is not there
      auto made = makeDirectories(path);
      if (made.isError()) return made.error();
      return false;
    }
    if (last) {
      if (err == 0) return false;
      if (err != EEXIST) return errnoError(ErrorKind::IO, "Failed to create directory '" + path + "'", err);
      struct stat st;
      if (::stat(path.c_str(), &st) != 0) return errnoError(ErrorKind::IO, "Failed to stat '" + path + "'", errno);
      if (S_ISDIR(st.st_mode)) return true;
      return errnoError(ErrorKind::IO, "Failed to create directory '" + path + "'", ENOTDIR);
    }
    if (err != 0 && err != EEXIST) {
      return errnoError(ErrorKind::IO, "Failed to create directory '" + path.substr(0, end) + "'", err);
    }
  }
}

Try<Nothing> makePrivateDirectory(const std::string& path, mode_t mode) {
  std::optional<mode_t> existing;
  auto made = makeDirectory(path, mode, &existing);
  if (made.isError() || !existing || (*existing & ~mode) == 0) return made;
  if (disk().fchmodat(AT_FDCWD, path.c_str(), *existing & mode, 0) != 0) {
    return errnoError(ErrorKind::IO, "Failed to narrow the permissions of '" + path + "'", errno);
  }
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

namespace {

// openBeneath without openat2.
int walkBeneath(int rootFd, const std::string& rel, int flags) {
  struct stat root {};
  if (::fstat(rootFd, &root) != 0) return -1;
  if (rel.empty() || rel.front() == '/') {
    errno = EXDEV;
    return -1;
  }
  Fd current(duplicate(rootFd));
  if (!current.valid()) return -1;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = rel.find('/', start);
    const bool last = slash == std::string::npos;
    std::string part = rel.substr(start, last ? std::string::npos : slash - start);
    start = last ? rel.size() : slash + 1;
    if (part == "..") {
      errno = EXDEV;
      return -1;
    }
    if (part.empty() || part == ".") {
      if (!last) continue;
      part = ".";  // the directory reached, opened as the caller asks
    }
    // Intermediate directories need search permission only, as with openat2.
    const int next = disk().openat(current.get(), part.c_str(),
                                   last ? (flags | O_NOFOLLOW) : (O_PATH | O_DIRECTORY | O_NOFOLLOW));
    if (next < 0) {
      // O_NOFOLLOW | O_DIRECTORY on a symlink says ENOTDIR; openat2 ELOOP.
      const int error = errno;
      struct stat link {};
      const bool symlink = error == ENOTDIR &&
                           ::fstatat(current.get(), part.c_str(), &link, AT_SYMLINK_NOFOLLOW) == 0 &&
                           S_ISLNK(link.st_mode);
      errno = symlink ? ELOOP : error;
      return -1;
    }
    struct stat st {};
    if (::fstat(next, &st) != 0) {
      const int error = errno;
      ::close(next);
      errno = error;
      return -1;
    }
    if (st.st_dev != root.st_dev) {
      ::close(next);
      errno = EXDEV;
      return -1;
    }
    if (last) return next;
    current = Fd(next);
  }
}

std::atomic<bool> mountRootFallback{false};

}  // namespace

int openBeneath(int rootFd, const std::string& rel, int flags) {
  const int fd = disk().openBeneath(rootFd, rel.c_str(), flags);
  // ENOSYS: no openat2 (before 5.6); EPERM: a seccomp filter that forbids it.
  if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) return fd;
  return walkBeneath(rootFd, rel, flags);
}

void forceMountRootFallback(bool force) { mountRootFallback = force; }

bool isMountRoot(int dirFd, const char* name) {
  struct statx stx {};
  if (::statx(dirFd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE | STATX_MNT_ID, &stx) != 0) return false;
  if ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && !mountRootFallback) {
    return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  }
  // A mount's root and its parent (".." leaves the mount) differ in device
  // or, for a bind mount within one file system, in mount id.
  if (!S_ISDIR(stx.stx_mode)) return false;  // what removeTree asks of: directories
  struct statx parent {};
  const std::string up = std::string(name) + "/..";
  // Not knowing is taken as a mount (removeTree then stops rather than
  // descending into one), unless it is gone.
  if (::statx(dirFd, up.c_str(), AT_NO_AUTOMOUNT, STATX_MNT_ID, &parent) != 0) return errno != ENOENT;
  if (stx.stx_dev_major != parent.stx_dev_major || stx.stx_dev_minor != parent.stx_dev_minor) return true;
  if ((stx.stx_mask & STATX_MNT_ID) && (parent.stx_mask & STATX_MNT_ID)) return stx.stx_mnt_id != parent.stx_mnt_id;
  // Before 5.8, no mount ids: the mount table says.
  std::string path = name;
  if (path.empty() || path.front() != '/') {
    char dir[PATH_MAX + 1] = {};
    const std::string link = dirFd == AT_FDCWD ? "/proc/self/cwd" : "/proc/self/fd/" + std::to_string(dirFd);
    const ssize_t n = ::readlink(link.c_str(), dir, PATH_MAX);
    if (n <= 0) return false;
    path = std::string(dir, static_cast<std::size_t>(n)) + "/" + path;
  }
  return isMountPoint(path);
}

bool isMountPoint(const std::string& path) {
  auto table = readKernelFile("/proc/self/mountinfo");
  if (table.isError()) return false;
  std::size_t start = 0;
  while (start < table->size()) {
    std::size_t end = table->find('\n', start);
    if (end == std::string::npos) end = table->size();
    const std::string_view line(table->data() + start, end - start);
    start = end + 1;
    // "ID PARENT MAJOR:MINOR ROOT MOUNT_POINT ...", spaces and the like in
    // MOUNT_POINT written as \ooo.
    std::size_t field = 0, at = 0;
    for (; field < 4 && at != std::string_view::npos; ++field) {
      at = line.find(' ', at);
      if (at != std::string_view::npos) ++at;
    }
    if (at == std::string_view::npos) continue;
    const std::string_view escaped = line.substr(at, line.find(' ', at) - at);
    std::string point;
    for (std::size_t i = 0; i < escaped.size(); ++i) {
      if (escaped[i] == '\\' && i + 3 < escaped.size()) {
        const std::string_view octal = escaped.substr(i + 1, 3);
        if (octal.find_first_not_of("01234567") == std::string_view::npos) {
          point += static_cast<char>((octal[0] - '0') * 64 + (octal[1] - '0') * 8 + (octal[2] - '0'));
          i += 3;
          continue;
        }
      }
      point += escaped[i];
    }
    if (point == path) return true;
  }
  return false;
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
