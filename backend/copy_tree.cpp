#include "backend/copy_tree.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include "store/tar_apply.hpp"

namespace prov::backend::copy {

namespace {

using actors::Error;
using actors::ErrorKind;

constexpr const char* kOverlayPrefix = "trusted.overlay.";

Error ioError(const std::string& what, const std::string& path, int err = errno) {
  return actors::errnoError(ErrorKind::IO, "Failed to " + what + " '" + path + "'", err);
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool isWhiteout(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == 0; }

bool isOpaque(const std::string& dir) {
  char value[2];
  ssize_t n = ::lgetxattr(dir.c_str(), store::kOpaqueXattr, value, sizeof(value));
  return n == 1 && value[0] == 'y';
}

// Copies extended attributes but overlay's own. With fds (regular files)
// the f* calls are used, else the l* calls on the paths.
Try<Nothing> copyXattrs(const std::string& source, const std::string& target, int in = -1, int out = -1) {
  auto list = [&](char* buffer, std::size_t size) {
    return in >= 0 ? ::flistxattr(in, buffer, size) : ::llistxattr(source.c_str(), buffer, size);
  };
  auto get = [&](const char* name, void* buffer, std::size_t size) {
    return in >= 0 ? ::fgetxattr(in, name, buffer, size) : ::lgetxattr(source.c_str(), name, buffer, size);
  };
  auto set = [&](const char* name, const void* value, std::size_t size) {
    return out >= 0 ? actors::fs::disk().fsetxattr(out, name, value, size, 0)
                    : actors::fs::disk().lsetxattr(target.c_str(), name, value, size, 0);
  };
  ssize_t size = list(nullptr, 0);
  if (size < 0) {
    if (errno == ENOTSUP) return Nothing{};
    return ioError("list extended attributes of", source);
  }
  if (size == 0) return Nothing{};
  std::string names(static_cast<std::size_t>(size), '\0');
  size = list(names.data(), names.size());
  if (size < 0) return ioError("list extended attributes of", source);
  for (std::size_t at = 0; at < static_cast<std::size_t>(size);) {
    const char* name = names.data() + at;
    at += std::strlen(name) + 1;
    if (std::strncmp(name, kOverlayPrefix, std::strlen(kOverlayPrefix)) == 0) continue;
    ssize_t length = get(name, nullptr, 0);
    if (length < 0) return ioError(std::string("read extended attribute ") + name + " of", source);
    std::string value(static_cast<std::size_t>(length), '\0');
    length = get(name, value.data(), value.size());
    if (length < 0) return ioError(std::string("read extended attribute ") + name + " of", source);
    if (set(name, value.data(), static_cast<std::size_t>(length)) != 0) {
      return ioError(std::string("set extended attribute ") + name + " on", target);
    }
  }
  return Nothing{};
}

// Owner, then mode (chown clears setuid/setgid), xattrs and times of a
// non-regular entry named `name` in `dirFd`.
Try<Nothing> applyMetadataAt(int dirFd, const char* name, const std::string& source, const std::string& target,
                             const struct stat& st) {
  if (actors::fs::disk().fchownat(dirFd, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return ioError("change the owner of", target);
  }
  if (!S_ISLNK(st.st_mode) && actors::fs::disk().fchmodat(dirFd, name, st.st_mode & 07777, 0) != 0) {
    return ioError("change the mode of", target);
  }
  if (auto x = copyXattrs(source, target); x.isError()) return x;
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (actors::fs::disk().utimensat(dirFd, name, times, AT_SYMLINK_NOFOLLOW) != 0) {
    return ioError("set the times of", target);
  }
  return Nothing{};
}

// Removes whatever `name` is in `dirFd` (a tree, if a directory).
Try<Nothing> removeAt(int dirFd, const char* name, const std::string& path, const struct stat& st) {
  if (S_ISDIR(st.st_mode)) {
    auto removed = actors::fs::removeTree(path);
    if (removed.isError()) return removed.error();
    return Nothing{};
  }
  if (actors::fs::disk().unlinkat(dirFd, name, 0) != 0) return ioError("remove", path);
  return Nothing{};
}

class Walker {
 public:
  Try<Nothing> walk(int sourceFd, int targetFd, const std::string& source, const std::string& target);
  LayerPlan plan;

 private:
  Try<Nothing> applyEntry(int sourceFd, int targetFd, const char* name, const std::string& source,
                          const std::string& target);
  Try<Nothing> applyDirectory(int sourceFd, int targetFd, const char* name, const std::string& source,
                              const std::string& target, const struct stat& st, bool targetExists,
                              const struct stat& targetSt);
  std::map<std::pair<dev_t, ino_t>, std::string> linked_;  // hardlinks inside the layer
};

Try<Nothing> Walker::walk(int sourceFd, int targetFd, const std::string& source, const std::string& target) {
  int listFd = actors::fs::duplicate(sourceFd);
  if (listFd < 0) return ioError("duplicate a descriptor of", source);
  DIR* dir = ::fdopendir(listFd);
  if (dir == nullptr) {
    int err = errno;
    ::close(listFd);
    return ioError("list", source, err);
  }
  std::vector<std::string> names;
  while (struct dirent* entry = ::readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) {
      names.emplace_back(entry->d_name);
    }
  }
  ::closedir(dir);
  for (const auto& name : names) {
    auto applied = applyEntry(sourceFd, targetFd, name.c_str(), source + "/" + name, target + "/" + name);
    if (applied.isError()) return applied;
  }
  return Nothing{};
}

Try<Nothing> Walker::applyEntry(int sourceFd, int targetFd, const char* name, const std::string& source,
                                const std::string& target) {
  struct stat st;
  if (::fstatat(sourceFd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return ioError("stat", source);
  struct stat targetSt;
  bool targetExists = ::fstatat(targetFd, name, &targetSt, AT_SYMLINK_NOFOLLOW) == 0;

  if (isWhiteout(st)) {
    if (targetExists) return removeAt(targetFd, name, target, targetSt);
    return Nothing{};
  }
  if (S_ISDIR(st.st_mode)) {
    return applyDirectory(sourceFd, targetFd, name, source, target, st, targetExists, targetSt);
  }
  // Anything else replaces what is below it; never written through.
  if (targetExists) {
    if (auto removed = removeAt(targetFd, name, target, targetSt); removed.isError()) return removed;
  }
  if (S_ISREG(st.st_mode)) {
    if (st.st_nlink > 1) {
      auto [it, first] = linked_.emplace(std::make_pair(st.st_dev, st.st_ino), target);
      if (!first) {
        plan.links.push_back(LinkJob{it->second, target});
        return Nothing{};
      }
    }
    plan.files.push_back(CopyJob{source, target, st});
    return Nothing{};
  }
  if (S_ISLNK(st.st_mode)) {
    std::string link(static_cast<std::size_t>(st.st_size > 0 ? st.st_size : PATH_MAX) + 1, '\0');
    ssize_t n = ::readlinkat(sourceFd, name, link.data(), link.size());
    if (n < 0) return ioError("read the link", source);
    link.resize(static_cast<std::size_t>(n));
    if (actors::fs::disk().symlinkat(link.c_str(), targetFd, name) != 0) return ioError("create the symlink", target);
  } else if (actors::fs::disk().mknodat(targetFd, name, st.st_mode, st.st_rdev) != 0) {
    return ioError("create the special file", target);
  }
  return applyMetadataAt(targetFd, name, source, target, st);
}

Try<Nothing> Walker::applyDirectory(int sourceFd, int targetFd, const char* name, const std::string& source,
                                    const std::string& target, const struct stat& st, bool targetExists,
                                    const struct stat& targetSt) {
  // A non-directory below is replaced; an opaque directory hides all that
  // lower layers put in it.
  if (targetExists && (!S_ISDIR(targetSt.st_mode) || isOpaque(source))) {
    if (auto removed = removeAt(targetFd, name, target, targetSt); removed.isError()) return removed;
    targetExists = false;
  }
  if (!targetExists && actors::fs::disk().mkdirat(targetFd, name, 0700) != 0)
    return ioError("create directory", target);
  Fd sourceDir(actors::fs::disk().openat(sourceFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (sourceDir.get() < 0) return ioError("open", source);
  Fd targetDir(actors::fs::disk().openat(targetFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (targetDir.get() < 0) return ioError("open", target);
  plan.directories.push_back(DirectoryFixup{source, target, st});
  return walk(sourceDir.get(), targetDir.get(), source, target);
}

// Copies `length` bytes at `offset` from `in` to `out` in the kernel, with a
// read/write fallback where copy_file_range is refused.
Try<Nothing> copyRange(int in, int out, off_t offset, off_t length, const CopyJob& job) {
  off_t inOffset = offset, outOffset = offset;
  while (length > 0) {
    ssize_t n = actors::fs::disk().copyFileRange(in, &inOffset, out, &outOffset, static_cast<size_t>(length));
    if (n > 0) {
      length -= n;
      continue;
    }
    if (n == 0) return Error(ErrorKind::IO, "Failed to copy '" + job.source + "': it shrank while being copied");
    if (errno == EINTR) continue;
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
      return ioError("copy '" + job.source + "' to", job.target);
    }
    char buffer[1 << 16];
    while (length > 0) {
      ssize_t r = ::pread(in, buffer, std::min<off_t>(length, sizeof(buffer)), inOffset);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return ioError("read", job.source, r == 0 ? EIO : errno);
      for (ssize_t done = 0; done < r;) {
        ssize_t w = actors::fs::disk().pwrite(out, buffer + done, static_cast<size_t>(r - done), outOffset);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return ioError("write", job.target);
        done += w;
        outOffset += w;
      }
      inOffset += r;
      length -= r;
    }
  }
  return Nothing{};
}

Try<Nothing> copyContents(int in, int out, const CopyJob& job, std::atomic<bool>& reflink) {
  const off_t size = job.st.st_size;
  if (size == 0) return Nothing{};
  if (reflink.load(std::memory_order_relaxed)) {
    if (actors::fs::disk().cloneFile(out, in) == 0) return Nothing{};
    if (errno == EOPNOTSUPP || errno == EXDEV || errno == EINVAL || errno == ENOTTY) {
      reflink.store(false, std::memory_order_relaxed);
    }
  }
  const bool sparse = static_cast<off_t>(job.st.st_blocks) * 512 < size;
  if (!sparse) return copyRange(in, out, 0, size, job);
  // Copy the data segments only; the holes stay holes.
  off_t data = 0;
  while (data < size) {
    data = ::lseek(in, data, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no more data
      return copyRange(in, out, 0, size, job);
    }
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0) hole = size;
    if (auto copied = copyRange(in, out, data, hole - data, job); copied.isError()) return copied;
    data = hole;
  }
  if (actors::fs::disk().ftruncate(out, size) != 0) return ioError("size", job.target);
  return Nothing{};
}

}  // namespace

Try<LayerPlan> prepareLayer(const std::string& layer, const std::string& rootfs) {
  Fd sourceFd(actors::fs::disk().openat(AT_FDCWD, layer.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (sourceFd.get() < 0) return ioError("open layer", layer);
  Fd targetFd(actors::fs::disk().openat(AT_FDCWD, rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (targetFd.get() < 0) return ioError("open rootfs", rootfs);
  Walker walker;
  struct stat st;
  if (::fstat(sourceFd.get(), &st) != 0) return ioError("stat", layer);
  walker.plan.directories.push_back(DirectoryFixup{layer, rootfs, st});
  auto walked = walker.walk(sourceFd.get(), targetFd.get(), layer, rootfs);
  if (walked.isError()) return walked.error();
  return std::move(walker.plan);
}

Try<Nothing> copyFile(const CopyJob& job, std::atomic<bool>& reflink) {
  Fd in(actors::fs::disk().openat(AT_FDCWD, job.source.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (in.get() < 0) return ioError("open", job.source);
  Fd out(actors::fs::disk().openat(AT_FDCWD, job.target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                   0600));
  if (out.get() < 0) return ioError("create", job.target);
  if (auto copied = copyContents(in.get(), out.get(), job, reflink); copied.isError()) return copied;
  if (actors::fs::disk().fchown(out.get(), job.st.st_uid, job.st.st_gid) != 0)
    return ioError("change the owner of", job.target);
  if (actors::fs::disk().fchmod(out.get(), job.st.st_mode & 07777) != 0)
    return ioError("change the mode of", job.target);
  if (auto x = copyXattrs(job.source, job.target, in.get(), out.get()); x.isError()) return x;
  const struct timespec times[2] = {job.st.st_atim, job.st.st_mtim};
  if (actors::fs::disk().futimens(out.get(), times) != 0) return ioError("set the times of", job.target);
  return Nothing{};
}

Try<Nothing> finishLayer(const LayerPlan& plan) {
  for (const auto& link : plan.links) {
    if (actors::fs::disk().linkat(AT_FDCWD, link.existing.c_str(), AT_FDCWD, link.target.c_str(), 0) != 0) {
      return ioError("link '" + link.existing + "' as", link.target);
    }
  }
  for (auto it = plan.directories.rbegin(); it != plan.directories.rend(); ++it) {
    auto applied = applyMetadataAt(AT_FDCWD, it->target.c_str(), it->source, it->target, it->st);
    if (applied.isError()) return applied;
  }
  return Nothing{};
}

}  // namespace prov::backend::copy
