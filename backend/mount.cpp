#include "backend/mount.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>
#include <string_view>

#include "actors/disk.hpp"
#include "actors/fs.hpp"

namespace prov::backend::mount {

namespace {

std::string unescape(const std::string& field) {
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && isdigit(field[i + 1]) && isdigit(field[i + 2]) &&
        isdigit(field[i + 3])) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

std::string canonical(const std::string& path) {
  // The mount point may be gone (detached); canonicalise what exists.
  char buffer[PATH_MAX];
  if (::realpath(path.c_str(), buffer) != nullptr) return buffer;
  return path;
}

}  // namespace

Try<std::vector<MountInfo>> parseTable(const std::string& text) {
  std::vector<MountInfo> mounts;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    // id parent major:minor root target options [optional...] - fstype source superoptions
    std::istringstream fields(line);
    MountInfo info;
    std::string devices, root, target, options, field;
    if (!(fields >> info.id >> info.parent >> devices >> root >> target >> options)) {
      return Error(actors::ErrorKind::Corruption, "Failed to parse mountinfo line '" + line + "'");
    }
    while (fields >> field && field != "-") {
      info.propagation += (info.propagation.empty() ? "" : " ") + field;
    }
    std::string fsType, source;
    if (field != "-" || !(fields >> fsType >> source)) {
      return Error(actors::ErrorKind::Corruption, "Failed to parse mountinfo line '" + line + "'");
    }
    info.root = unescape(root);
    info.target = unescape(target);
    info.fsType = fsType;
    info.source = unescape(source);
    mounts.push_back(std::move(info));
  }
  return mounts;
}

Try<std::vector<MountInfo>> table() {
  auto text = actors::fs::readKernelFile("/proc/self/mountinfo");
  if (text.isError()) return text.error();
  return parseTable(*text);
}

Try<bool> isMountPoint(const std::string& path) {
  auto mounts = table();
  if (mounts.isError()) return mounts.error();
  const std::string target = canonical(path);
  for (const auto& m : *mounts) {
    if (m.target == target) return true;
  }
  return false;
}

Try<Nothing> unmountLazily(const std::string& path) {
  if (actors::fs::disk().umount2(path.c_str(), MNT_DETACH) != 0) {
    return actors::errnoError(actors::ErrorKind::IO, "Failed to unmount '" + path + "'", errno);
  }
  return Nothing{};
}

Try<Nothing> makeSharedSlave(const std::string& path) {
  if (actors::fs::disk().mount(nullptr, path.c_str(), nullptr, MS_SLAVE, nullptr) != 0) {
    return actors::errnoError(actors::ErrorKind::IO, "Failed to mark '" + path + "' as a slave mount", errno);
  }
  if (actors::fs::disk().mount(nullptr, path.c_str(), nullptr, MS_SHARED, nullptr) != 0) {
    return actors::errnoError(actors::ErrorKind::IO, "Failed to mark '" + path + "' as shared", errno);
  }
  return Nothing{};
}

bool kernelSupports(const std::string& fsType) {
  auto text = actors::fs::readKernelFile("/proc/filesystems");
  std::istringstream in(text.isSome() ? *text : std::string());
  std::string line;
  while (std::getline(in, line)) {
    const auto tab = line.find('\t');
    const std::string name = tab == std::string::npos ? line : line.substr(tab + 1);
    if (name == fsType || (fsType == "overlay" && name == "overlayfs")) return true;
  }
  return false;
}

Try<long> fileSystemType(const std::string& path) {
  struct statfs st;
  if (::statfs(path.c_str(), &st) != 0) {
    return actors::errnoError(actors::ErrorKind::IO, "Failed to statfs '" + path + "'", errno);
  }
  return static_cast<long>(st.f_type);
}

Try<bool> supportsDType(const std::string& path) {
  // An entry already there whose type readdir reports answers it without
  // writing anything: a file system without d_type reports DT_UNKNOWN for
  // every entry. (A work dir in use holds several; the probe below costs
  // every command 1-2 ms of metadata writes.)
  if (DIR* dir = ::opendir(path.c_str())) {
    bool reported = false;
    while (const struct dirent* entry = ::readdir(dir)) {
      const std::string_view name = entry->d_name;
      if (name != "." && name != ".." && entry->d_type != DT_UNKNOWN) {
        reported = true;
        break;
      }
    }
    ::closedir(dir);
    if (reported) return true;
  }
  std::string probe = path + "/.dtype-probe-XXXXXX";
  if (::mkdtemp(probe.data()) == nullptr) {
    return actors::errnoError(actors::ErrorKind::IO, "Failed to create a probe directory in '" + path + "'", errno);
  }
  bool known = true;
  if (::mkdir((probe + "/d").c_str(), 0700) != 0) known = false;
  if (DIR* dir = ::opendir(probe.c_str())) {
    while (struct dirent* entry = ::readdir(dir)) {
      if (std::string(entry->d_name) == "d" && entry->d_type == DT_UNKNOWN) known = false;
    }
    ::closedir(dir);
  }
  auto& disk = actors::fs::disk();
  if ((disk.unlinkat(AT_FDCWD, (probe + "/d").c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) ||
      disk.unlinkat(AT_FDCWD, probe.c_str(), AT_REMOVEDIR) != 0) {
    const int error = errno;
    return actors::errnoError(actors::ErrorKind::IO, "Failed to remove the probe directory '" + probe + "'", error);
  }
  return known;
}

namespace {

// `path`'s mount id (statx, Linux 5.8), device and inode, in `out`; false
// when the kernel tells no mount id. `flags` as statx's (AT_EMPTY_PATH
// with `dirFd`).
bool statWithMount(int dirFd, const char* path, int flags, struct statx* out) {
  if (::statx(dirFd, path, flags | AT_NO_AUTOMOUNT, STATX_INO | STATX_MNT_ID, out) != 0) return false;
  return (out->stx_mask & STATX_MNT_ID) != 0;
}

}  // namespace

bool statForView(const std::string& path, struct ::statx* out) {
  return ::statx(AT_FDCWD, path.c_str(), AT_NO_AUTOMOUNT, STATX_TYPE | STATX_INO | STATX_MNT_ID, out) == 0;
}

Try<std::unique_ptr<DetachedView>> DetachedView::open(const std::string& root) {
  struct statx st {};
  if (!statWithMount(AT_FDCWD, root.c_str(), 0, &st)) {
    return Error(actors::ErrorKind::Unsupported, "No mount id for '" + root + "' (statx, Linux 5.8)");
  }
  const std::uint64_t rootMount = st.stx_mnt_id;
  const int fd = ::open_tree(AT_FDCWD, root.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    return actors::errnoError(error == ENOSYS ? actors::ErrorKind::Unsupported : actors::ErrorKind::IO,
                              "Failed to take a detached copy of the mount at '" + root + "'", error);
  }
  if (!statWithMount(fd, "", AT_EMPTY_PATH, &st)) {
    const int error = errno;
    ::close(fd);
    return actors::errnoError(actors::ErrorKind::IO, "Failed to stat the detached copy of '" + root + "'", error);
  }
  std::string trimmed = root;
  while (!trimmed.empty() && trimmed.back() == '/') trimmed.pop_back();
  return std::unique_ptr<DetachedView>(new DetachedView(std::move(trimmed), rootMount, st.stx_mnt_id, fd));
}

DetachedView::DetachedView(std::string root, std::uint64_t rootMount, std::uint64_t copyMount, int fd)
    : root_(std::move(root)), rootMount_(rootMount), copyMount_(copyMount), fd_(fd),
      prefix_("/proc/self/fd/" + std::to_string(fd)) {}

DetachedView::~DetachedView() { ::close(fd_); }

bool DetachedView::below(const std::string& path) const {
  return path.size() > root_.size() && path.compare(0, root_.size(), root_) == 0 && path[root_.size()] == '/';
}

std::string DetachedView::through(const std::string& path) const {
  struct statx real {};
  if (!below(path) || !statForView(path, &real)) return path;
  return through(path, real);
}

std::string DetachedView::through(const std::string& path, const struct ::statx& real) const {
  // The real path on the root's own mount (not on a mount below it, even a
  // bind of the same directory with other flags), the copy's path on the
  // copy (no symbolic link led it elsewhere), and the two the same file.
  if (!below(path) || (real.stx_mask & STATX_MNT_ID) == 0 || real.stx_mnt_id != rootMount_) return path;
  struct statx seen {};
  const std::string viewed = prefix_ + path.substr(root_.size());
  if (!statWithMount(AT_FDCWD, viewed.c_str(), 0, &seen) || seen.stx_mnt_id != copyMount_) return path;
  if (seen.stx_dev_major != real.stx_dev_major || seen.stx_dev_minor != real.stx_dev_minor ||
      seen.stx_ino != real.stx_ino) {
    return path;
  }
  return viewed;
}

}  // namespace prov::backend::mount
