#include "store/tar_apply.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include "actors/path.hpp"
#include "store/file_writer.hpp"

namespace prov::store {

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr std::string_view kOverlayXattrPrefix = "trusted.overlay.";

using actors::fs::Fd;

std::pair<std::string, std::string> splitParent(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

// This process's umask, read without changing it; all bits set (so nothing
// is taken for granted) when /proc cannot tell.
mode_t currentUmask() {
  auto text = actors::fs::readKernelFile("/proc/self/status");
  std::istringstream status(text.isSome() ? *text : std::string());
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("Umask:")) return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8));
  }
  return 07777;
}

bool isWhiteout(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0); }

struct DirTimes {
  std::string path;
  timespec times[2];
};

class Applier {
 public:
  Applier(const std::string& root, TarSource& source, const ApplyOptions& options)
      : rootPath_(root), source_(source), options_(options) {}

  Try<ApplyResult> run() {
    umask_ = currentUmask();
    runningAsRoot_ = ::geteuid() == 0 && ::getegid() == 0;
    root_ = Fd(actors::fs::disk().openat(AT_FDCWD, rootPath_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root_.valid()) return sysError("open the layer root '" + rootPath_ + "'");
    std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), &archive_read_free);
    archive_ = a.get();
    archive_read_support_format_tar(archive_);
    if (archive_read_open(archive_, this, nullptr, &Applier::readCallback, nullptr) != ARCHIVE_OK) {
      return archiveError("open");
    }
    for (;;) {
      archive_entry* entry = nullptr;
      const int rc = archive_read_next_header(archive_, &entry);
      if (rc == ARCHIVE_EOF) break;
      if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) return archiveError("read a header of");
      if (++result_.entries > options_.limits.maxEntries) {
        return Error(ErrorKind::ResourceExhausted, "Failed to extract " + options_.what + ": it has more than " +
                                                       std::to_string(options_.limits.maxEntries) +
                                                       " entries (the entry limit, --max_layer_entries)");
      }
      auto applied = applyEntry(entry);
      if (applied.isError()) return applied.error();
    }
    // The tar's end blocks may be followed by padding; the diffID covers it.
    for (;;) {
      auto more = source_.read();
      if (more.isError()) return more.error();
      if (more->empty()) break;
    }
    auto timed = setDirectoryTimes();
    if (timed.isError()) return timed.error();
    for (const auto& dir : implied_) result_.impliedDirs.push_back(dir);
    // What the headers do not say: the root, implied directories and
    // whiteouts (their owner comes from this process, or a setgid parent).
    restat_.insert("");
    restat_.insert(implied_.begin(), implied_.end());
    auto restated = restatEntries(rootPath_, std::vector<std::string>(restat_.begin(), restat_.end()), result_.record);
    if (restated.isError()) return restated.error();
    return std::move(result_);
  }

 private:
  static la_ssize_t readCallback(archive* a, void* self, const void** buffer) {
    auto* applier = static_cast<Applier*>(self);
    auto piece = applier->source_.read();
    if (piece.isError()) {
      applier->sourceError_ = piece.error();
      archive_set_error(a, EIO, "%s", piece.error().message.c_str());
      return -1;
    }
    *buffer = piece->data();
    return static_cast<la_ssize_t>(piece->size());
  }

  Error archiveError(const std::string& verb) {
    if (sourceError_) return *sourceError_;
    const char* why = archive_error_string(archive_);
    return Error(ErrorKind::Corruption, "Failed to " + verb + " " + options_.what + ": not a valid tar stream (" +
                                            (why ? why : "unknown error") + ")");
  }

  Error sysError(const std::string& doing, int error = errno) const {
    return Error(ErrorKind::IO, "Failed to " + doing + " in " + options_.what + ": " + std::strerror(error));
  }

  Error rejected(const std::string& entry, const std::string& why) const {
    return Error(ErrorKind::InvalidArgument,
                 "Failed to extract " + options_.what + ": entry '" + entry + "' is rejected: " + why);
  }

  Error entryError(const std::string& entry, const std::string& doing, int error = errno) const {
    // The directory says which file system failed (ENOSPC, EIO, EROFS).
    return Error(ErrorKind::IO, "Failed to extract " + options_.what + " into '" + rootPath_ + "': entry '" + entry +
                                    "': failed to " + doing + ": " + std::strerror(error));
  }

  // ---- directories inside the root ------------------------------------------

  // An fd for the directory `rel` (relative, clean). With `create`, missing
  // directories are made (and recorded as implied). The cache keeps the last
  // directory opened; `borrowed` means the fd belongs to the cache.
  Try<int> openDir(const std::string& entry, const std::string& rel, bool create) {
    if (rel.empty()) return root_.get();
    if (cacheValid_ && cachePath_ == rel) return cacheFd_.get();
    Fd fd = openBeneath(rel);
    if (!fd.valid()) {
      auto walked = walk(entry, rel, create);
      if (walked.isError()) return walked.error();
      fd = Fd(*walked);
    }
    cacheFd_ = std::move(fd);
    cachePath_ = rel;
    cacheValid_ = true;
    return cacheFd_.get();
  }

  void forgetCache() {
    cacheFd_.reset();
    cacheValid_ = false;
  }

  Fd openBeneath(const std::string& rel) const {
    return Fd(actors::fs::openBeneath(root_.get(), rel, O_RDONLY | O_DIRECTORY));
  }

  // One component at a time with O_NOFOLLOW: the precise error, and the
  // fallback where openat2 is missing.
  Try<int> walk(const std::string& entry, const std::string& rel, bool create) {
    Fd current(actors::fs::duplicate(root_.get()));
    std::string prefix;
    std::size_t start = 0;
    while (start <= rel.size()) {
      const std::size_t slash = rel.find('/', start);
      const std::string part = rel.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      start = slash == std::string::npos ? rel.size() + 1 : slash + 1;
      prefix += (prefix.empty() ? "" : "/") + part;
      int next = actors::fs::disk().openat(current.get(), part.c_str(),
                                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      bool overWhiteout = false;
      if (next < 0 && errno == ENOTDIR && create) {
        // This layer deleted the name below and now puts a directory there:
        // an opaque directory.
        struct stat st {};
        if (::fstatat(current.get(), part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && isWhiteout(st) &&
            actors::fs::disk().unlinkat(current.get(), part.c_str(), 0) == 0) {
          overWhiteout = true;
          errno = ENOENT;
        }
      }
      if (next < 0 && errno == ENOENT && create) {
        if (actors::fs::disk().mkdirat(current.get(), part.c_str(), 0755) != 0)
          return entryError(entry, "create '" + prefix + "'");
        implied_.insert(prefix);
        // It took its parent's setgid bit and group, as its files will.
        if (setgidDirs_.count(splitParent(prefix).first) > 0) setgidDirs_.insert(prefix);
        next = actors::fs::disk().openat(current.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next >= 0 && overWhiteout && actors::fs::disk().fsetxattr(next, kOpaqueXattr, "y", 1, 0) != 0) {
          ::close(next);
          return entryError(entry, "mark '" + prefix + "' opaque");
        }
      }
      if (next < 0) {
        const int error = errno;
        struct stat st {};
        if (::fstatat(current.get(), part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
          if (S_ISLNK(st.st_mode)) return rejected(entry, "its path goes through the symlink '" + prefix + "'");
          if (!S_ISDIR(st.st_mode)) return rejected(entry, "'" + prefix + "' is not a directory");
        }
        if (error == ENOENT) return rejected(entry, "'" + prefix + "' is not in the layer");
        return entryError(entry, "open '" + prefix + "'", error);
      }
      current = Fd(next);
    }
    return actors::fs::duplicate(current.get());
  }

  // ---- entries --------------------------------------------------------------

  Try<Nothing> applyEntry(archive_entry* e) {
    const char* raw = archive_entry_pathname(e);
    if (raw == nullptr) raw = archive_entry_pathname_utf8(e);
    if (raw == nullptr) return rejected("?", "it has no path");
    const std::string name(raw);
    if (name.size() > options_.limits.maxPathBytes) {
      return rejected(name.substr(0, 64) + "...", "its path is " + std::to_string(name.size()) +
                                                      " bytes, over the limit of " +
                                                      std::to_string(options_.limits.maxPathBytes));
    }
    auto clean = actors::path::cleanRelative(name);
    if (clean.isError()) return rejected(name, clean.error().message);
    const mode_t type = archive_entry_filetype(e);
    auto inside = inSubtree(*clean);
    if (!inside) return applyOutside(name, *clean, type, e);
    const std::string& path = *inside;
    const auto [parent, base] = splitParent(path);

    if (options_.whiteouts && base.starts_with(kWhiteoutPrefix)) return applyWhiteout(name, parent, base);

    if (path.empty()) {
      if (type != AE_IFDIR) return rejected(name, "the layer root must be a directory");
      return applyDirectoryMetadata(name, "", root_.get(), e);
    }
    auto dir = openDir(name, parent, true);
    if (dir.isError()) return dir.error();
    const int parentFd = *dir;

    if (const char* link = archive_entry_hardlink(e); link != nullptr) {
      return applyHardlink(name, path, parentFd, base, link);
    }

    // A file is most often new: created at once (O_EXCL, which follows no
    // symlink), and looked at and replaced only when its name is taken. One
    // lookup of a new file's name, not two, as GNU tar does.
    if (type == AE_IFREG) {
      bool taken = false;
      auto created = createFile(name, path, parentFd, base, e, &taken);
      if (!taken) return created;
    }

    struct stat st {};
    if (::fstatat(parentFd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISDIR(st.st_mode) && type == AE_IFDIR) {
        implied_.erase(path);
        Fd fd(actors::fs::disk().openat(parentFd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd.valid()) return entryError(name, "open the directory");
        return applyDirectoryMetadata(name, path, fd.get(), e);
      }
      auto removed = removeExisting(name, path, parentFd, base, st);
      if (removed.isError()) return removed;
      // Removing a directory may have dropped the cached parent; reopen.
      dir = openDir(name, parent, true);
      if (dir.isError()) return dir.error();
      // Deleted below and made a directory again in this layer: opaque.
      if (isWhiteout(st) && type == AE_IFDIR) opaqueNext_ = true;
    }
    return create(name, path, *dir, base, type, e);
  }

  Try<Nothing> removeExisting(const std::string& name, const std::string& path, int parentFd, const std::string& base,
                              const struct stat& st) {
    if (!S_ISDIR(st.st_mode)) {
      if (actors::fs::disk().unlinkat(parentFd, base.c_str(), 0) != 0)
        return entryError(name, "replace the earlier entry");
      result_.record.erase(path);
      return Nothing{};
    }
    forgetCache();
    auto removed = actors::fs::removeTree(rootPath_ + "/" + path);
    if (removed.isError()) return removed.error();
    result_.record.erase(path);
    const std::string below = path + "/";
    for (auto it = result_.record.lower_bound(below); it != result_.record.end() && it->first.starts_with(below);) {
      it = result_.record.erase(it);
    }
    for (auto it = restat_.lower_bound(below); it != restat_.end() && it->starts_with(below);) it = restat_.erase(it);
    for (auto it = implied_.lower_bound(path); it != implied_.end() && it->starts_with(path);) {
      it = (*it == path || (*it)[path.size()] == '/') ? implied_.erase(it) : std::next(it);
    }
    return Nothing{};
  }

  Try<Nothing> create(const std::string& name, const std::string& path, int parentFd, const std::string& base,
                      mode_t type, archive_entry* e) {
    switch (type) {
      case AE_IFREG: return createFile(name, path, parentFd, base, e);
      case AE_IFDIR: {
        if (actors::fs::disk().mkdirat(parentFd, base.c_str(), 0700) != 0)
          return entryError(name, "create the directory");
        Fd fd(actors::fs::disk().openat(parentFd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd.valid()) return entryError(name, "open the directory");
        if (std::exchange(opaqueNext_, false) && actors::fs::disk().fsetxattr(fd.get(), kOpaqueXattr, "y", 1, 0) != 0) {
          return entryError(name, "mark the directory opaque");
        }
        auto applied = applyDirectoryMetadata(name, path, fd.get(), e);
        // The next entries are most likely inside it.
        cacheFd_ = std::move(fd);
        cachePath_ = path;
        cacheValid_ = true;
        return applied;
      }
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(e);
        if (target == nullptr) target = archive_entry_symlink_utf8(e);
        if (target == nullptr || *target == '\0') return rejected(name, "the symlink has no target");
        if (actors::fs::disk().symlinkat(target, parentFd, base.c_str()) != 0)
          return entryError(name, "create the symlink");
        auto applied = applyPathMetadata(name, parentFd, base, e, /*symlink=*/true);
        if (applied.isError()) return applied;
        auto recorded = recordAt(name, path, parentFd, base);
        if (recorded.isError()) return recorded.error();
        (*recorded)->target = target;
        (*recorded)->size = (*recorded)->target.size();
        return Nothing{};
      }
      case AE_IFCHR:
      case AE_IFBLK:
      case AE_IFIFO: {
        const dev_t dev = type == AE_IFIFO ? 0 : makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
        if (actors::fs::disk().mknodat(parentFd, base.c_str(), type | 0600, dev) != 0)
          return entryError(name, "create the node");
        auto applied = applyPathMetadata(name, parentFd, base, e, /*symlink=*/false);
        if (applied.isError()) return applied;
        auto recorded = recordAt(name, path, parentFd, base);
        if (recorded.isError()) return recorded.error();
        return Nothing{};
      }
      default:
        return Error(ErrorKind::Unsupported, "Failed to extract " + options_.what + ": entry '" + name +
                                                 "' has an unsupported type (" + std::to_string(type) + ")");
    }
  }

  // With `taken`, a name already there is no error: *taken says so, and
  // nothing was done.
  Try<Nothing> createFile(const std::string& name, const std::string& path, int parentFd, const std::string& base,
                          archive_entry* e, bool* taken = nullptr) {
    const std::string parent = splitParent(path).first;
    const mode_t perm = permissions(e);
    // Sparse files unpack to their sizes too (and the record hashes their
    // holes): the files' sizes together stay within the layer limit, as
    // the bytes of a layer without holes do.
    const std::uint64_t total = filesBytes_ +
                                (archive_entry_size(e) > 0 ? static_cast<std::uint64_t>(archive_entry_size(e)) : 0);
    if (total > options_.limits.maxLayerBytes) {
      return Error(ErrorKind::ResourceExhausted,
                   "Failed to extract " + options_.what + ": with entry '" + name + "' (" +
                       std::to_string(archive_entry_size(e)) + " bytes) its files are " + std::to_string(total) +
                       " bytes, over the layer limit of " + std::to_string(options_.limits.maxLayerBytes) +
                       " (--max_layer_bytes)");
    }
    Fd fd(actors::fs::disk().openat(parentFd, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                    perm & 0777));
    if (!fd.valid()) {
      const int error = errno;
      if (error == EEXIST && taken != nullptr) {
        *taken = true;
        return Nothing{};
      }
      return entryError(name, "create the file", error);
    }
    filesBytes_ = total;
    FileWriter writer(fd.get(), archive_entry_size(e), directWrites_);
    // Hashed as written; blocks out of order (no tar writer makes them) are
    // read back at the end instead.
    fileHash_.reset();
    std::int64_t hashed = 0;
    bool inOrder = true;
    for (;;) {
      const void* block = nullptr;
      std::size_t size = 0;
      la_int64_t offset = 0;
      const int rc = archive_read_data_block(archive_, &block, &size, &offset);
      if (rc == ARCHIVE_EOF) break;
      if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) return archiveError("read the data of '" + name + "' in");
      const char* data = static_cast<const char*>(block);
      if (offset < hashed) inOrder = false;
      if (inOrder) {
        fileHash_.zeros(static_cast<std::uint64_t>(offset - hashed));
        fileHash_.update(data, size);
        hashed = offset + static_cast<std::int64_t>(size);
      }
      if (!writer.write(data, size, offset)) return entryError(name, "write");
    }
    if (!writer.finish()) return entryError(name, "write");
    const std::int64_t end = writer.end();
    const std::int64_t size = archive_entry_size(e);
    if (end < size && actors::fs::disk().ftruncate(fd.get(), size) != 0)
      return entryError(name, "size the sparse file");
    // Most files are root's with plain modes: as created, they need neither
    // chown nor chmod (unless a setgid directory gave them its group).
    const bool chown = !(archive_entry_uid(e) == 0 && archive_entry_gid(e) == 0 && runningAsRoot_ &&
                         setgidDirs_.count(parent) == 0);
    const bool chmod = chown || perm != ((perm & 0777) & ~umask_);
    auto applied = applyFdMetadata(name, fd.get(), e, chown, chmod);
    if (applied.isError()) return applied;
    // The owner and mode as the disk has them (an ACL xattr changes the
    // group bits, a file system may pick the group); the bytes as written.
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return entryError(name, "stat the file");
    RecordedEntry& recorded = record(path, st);
    if (inOrder) {
      fileHash_.zeros(static_cast<std::uint64_t>(std::max<std::int64_t>(0, st.st_size - hashed)));
      recorded.hash = fileHash_.digest();
    } else {
      restat_.insert(path);
    }
    return Nothing{};
  }

  // `path` relative to the subtree, or none when it is outside it.
  std::optional<std::string> inSubtree(const std::string& path) {
    const std::string& sub = options_.subtree;
    if (sub.empty()) return path;
    if (path == sub) {
      result_.sawSubtree = true;
      return std::string();
    }
    if (path.size() > sub.size() && path.starts_with(sub) && path[sub.size()] == '/') {
      result_.sawSubtree = true;
      return path.substr(sub.size() + 1);
    }
    return std::nullopt;
  }

  // An entry beside the subtree: a file the caller captures, or rejected.
  Try<Nothing> applyOutside(const std::string& name, const std::string& path, mode_t type, archive_entry* e) {
    if (path.empty() && type == AE_IFDIR) return Nothing{};  // "./": the archive's own root
    if (result_.captured.count(path) > 0) return rejected(name, "the archive has it twice");
    if (options_.capture.count(path) == 0 || type != AE_IFREG || archive_entry_hardlink(e) != nullptr) {
      return rejected(name, "it is outside '" + options_.subtree + "/'");
    }
    const la_int64_t size = archive_entry_size(e);
    if (size < 0 || static_cast<std::uint64_t>(size) > options_.captureLimit) {
      return Error(ErrorKind::ResourceExhausted, "Failed to extract " + options_.what + ": '" + path + "' is " +
                                                     std::to_string(size) + " bytes, over the limit of " +
                                                     std::to_string(options_.captureLimit));
    }
    std::string bytes(static_cast<std::size_t>(size), '\0');
    std::size_t got = 0;
    while (got < bytes.size()) {
      const la_ssize_t n = archive_read_data(archive_, bytes.data() + got, bytes.size() - got);
      if (n < 0) return archiveError("read '" + path + "' of");
      if (n == 0) break;
      got += static_cast<std::size_t>(n);
    }
    if (got != bytes.size()) return archiveError("read '" + path + "' of");
    result_.captured[path] = std::move(bytes);
    return Nothing{};
  }

  Try<Nothing> applyHardlink(const std::string& name, const std::string& path, int parentFd, const std::string& base,
                             const char* rawTarget) {
    auto cleanTarget = actors::path::cleanRelative(rawTarget);
    std::optional<std::string> target;
    if (cleanTarget.isSome()) {
      const bool before = result_.sawSubtree;
      target = inSubtree(*cleanTarget);
      result_.sawSubtree = before;
    }
    if (!target) return rejected(name, "its hardlink target '" + std::string(rawTarget) + "' is outside the layer");
    if (*target == path) return Nothing{};
    const auto [targetParent, targetBase] = splitParent(*target);
    if (targetBase.empty()) return rejected(name, "its hardlink target is the layer root");
    Fd targetDir = targetParent.empty() ? Fd(actors::fs::duplicate(root_.get())) : openBeneath(targetParent);
    if (!targetDir.valid()) {
      return rejected(name, "its hardlink target '" + *target + "' is not in the layer (or goes through a symlink)");
    }
    struct stat st {};
    if (::fstatat(targetDir.get(), targetBase.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return rejected(name, "its hardlink target '" + *target + "' is not in the layer");
    }
    if (S_ISDIR(st.st_mode)) return rejected(name, "its hardlink target '" + *target + "' is a directory");
    struct stat existing {};
    if (::fstatat(parentFd, base.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0) {
      auto removed = removeExisting(name, path, parentFd, base, existing);
      if (removed.isError()) return removed;
      auto dir = openDir(name, splitParent(path).first, true);
      if (dir.isError()) return dir.error();
      parentFd = *dir;
    }
    if (actors::fs::disk().linkat(targetDir.get(), targetBase.c_str(), parentFd, base.c_str(), 0) != 0) {
      return entryError(name, "create the hardlink to '" + *target + "'");
    }
    // The same file: what the record says of its target, unless the disk
    // has to tell.
    if (auto linked = result_.record.find(*target); linked != result_.record.end() && restat_.count(*target) == 0) {
      result_.record[path] = linked->second;
      restat_.erase(path);
    } else {
      restat_.insert(path);
    }
    return Nothing{};
  }

  Try<Nothing> applyWhiteout(const std::string& name, const std::string& parent, const std::string& base) {
    if (base == kOpaqueMarker) {
      auto dir = openDir(name, parent, true);
      if (dir.isError()) return dir.error();
      if (options_.bottomLayer) return Nothing{};
      if (actors::fs::disk().fsetxattr(*dir, kOpaqueXattr, "y", 1, 0) != 0)
        return entryError(name, "mark the directory opaque");
      return Nothing{};
    }
    const std::string target = base.substr(kWhiteoutPrefix.size());
    if (target.empty() || target == "." || target == "..") {
      return rejected(name, "the whiteout reaches outside its directory");
    }
    if (target.starts_with(kWhiteoutPrefix)) return Nothing{};  // aufs metadata (.wh..wh.plnk, ...)
    auto dir = openDir(name, parent, true);
    if (dir.isError()) return dir.error();
    if (options_.bottomLayer) return Nothing{};
    struct stat st {};
    if (::fstatat(*dir, target.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      // This layer's own entry wins; a directory it made keeps nothing from below.
      if (S_ISDIR(st.st_mode)) {
        Fd fd(actors::fs::disk().openat(*dir, target.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd.valid() || actors::fs::disk().fsetxattr(fd.get(), kOpaqueXattr, "y", 1, 0) != 0) {
          return entryError(name, "mark '" + target + "' opaque");
        }
      }
      return Nothing{};
    }
    if (actors::fs::disk().mknodat(*dir, target.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0)
      return entryError(name, "create the whiteout");
    restat_.insert(parent.empty() ? target : parent + "/" + target);
    return Nothing{};
  }

  // ---- metadata -------------------------------------------------------------

  static timespec timeOf(time_t seconds, long nanos) { return timespec{seconds, nanos}; }

  void entryTimes(archive_entry* e, timespec times[2]) {
    times[1] = timeOf(archive_entry_mtime(e), archive_entry_mtime_nsec(e));
    times[0] = archive_entry_atime_is_set(e) ? timeOf(archive_entry_atime(e), archive_entry_atime_nsec(e)) : times[1];
  }

  mode_t permissions(archive_entry* e) const { return archive_entry_perm(e) & 07777; }

  // Calls set(name, value, size) for each xattr to keep.
  template <typename Set>
  Try<Nothing> forEachXattr(const std::string& entry, archive_entry* e, Set&& set) {
    std::size_t total = 0;
    archive_entry_xattr_reset(e);
    const char* key = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK) {
      total += std::strlen(key) + size;
      if (total > options_.limits.maxXattrBytes) {
        return rejected(entry,
                        "its xattrs are over the limit of " + std::to_string(options_.limits.maxXattrBytes) + " bytes");
      }
      if (std::string_view(key).starts_with(kOverlayXattrPrefix)) continue;
      if (!set(key, value, size)) return entryError(entry, std::string("set the xattr '") + key + "'");
    }
    return Nothing{};
  }

  Try<Nothing> applyFdMetadata(const std::string& name, int fd, archive_entry* e, bool chown, bool chmod) {
    if (chown && actors::fs::disk().fchown(fd, archive_entry_uid(e), archive_entry_gid(e)) != 0)
      return entryError(name, "set the owner");
    if (chmod && actors::fs::disk().fchmod(fd, permissions(e)) != 0) return entryError(name, "set the mode");
    auto xattrs = forEachXattr(name, e, [fd](const char* key, const void* value, std::size_t size) {
      return actors::fs::disk().fsetxattr(fd, key, value, size, 0) == 0;
    });
    if (xattrs.isError()) return xattrs;
    timespec times[2];
    entryTimes(e, times);
    if (actors::fs::disk().futimens(fd, times) != 0) return entryError(name, "set the times");
    return Nothing{};
  }

  Try<Nothing> applyDirectoryMetadata(const std::string& name, const std::string& path, int fd, archive_entry* e) {
    if (actors::fs::disk().fchown(fd, archive_entry_uid(e), archive_entry_gid(e)) != 0)
      return entryError(name, "set the owner");
    if (actors::fs::disk().fchmod(fd, permissions(e)) != 0) return entryError(name, "set the mode");

    if (permissions(e) & S_ISGID) {
      setgidDirs_.insert(path);
    } else {
      setgidDirs_.erase(path);
    }
    auto xattrs = forEachXattr(name, e, [fd](const char* key, const void* value, std::size_t size) {
      return actors::fs::disk().fsetxattr(fd, key, value, size, 0) == 0;
    });
    if (xattrs.isError()) return xattrs;
    struct stat st {};
    if (::fstat(fd, &st) != 0) return entryError(name, "stat the directory");
    record(path, st);
    DirTimes times{path, {}};
    entryTimes(e, times.times);
    dirTimes_.push_back(std::move(times));
    return Nothing{};
  }

  Try<Nothing> applyPathMetadata(const std::string& name, int parentFd, const std::string& base, archive_entry* e,
                                 bool symlink) {
    if (actors::fs::disk().fchownat(parentFd, base.c_str(), archive_entry_uid(e), archive_entry_gid(e),
                                    AT_SYMLINK_NOFOLLOW) != 0) {
      return entryError(name, "set the owner");
    }
    if (!symlink && actors::fs::disk().fchmodat(parentFd, base.c_str(), permissions(e), 0) != 0)
      return entryError(name, "set the mode");
    const std::string procPath = "/proc/self/fd/" + std::to_string(parentFd) + "/" + base;
    auto xattrs = forEachXattr(name, e, [&procPath](const char* key, const void* value, std::size_t size) {
      return actors::fs::disk().lsetxattr(procPath.c_str(), key, value, size, 0) == 0;
    });
    if (xattrs.isError()) return xattrs;
    timespec times[2];
    entryTimes(e, times);
    if (actors::fs::disk().utimensat(parentFd, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
      return entryError(name, "set the times");
    return Nothing{};
  }

  // The record's entry for `path`, made anew from `st`: type, mode, owner,
  // a file's size, a device's number (a file's hash is the caller's).
  RecordedEntry& record(const std::string& path, const struct stat& st) {
    RecordedEntry& recorded = result_.record[path];
    recorded = RecordedEntry{};
    recorded.mode = st.st_mode;
    recorded.uid = st.st_uid;
    recorded.gid = st.st_gid;
    if (S_ISREG(st.st_mode)) recorded.size = static_cast<std::uint64_t>(st.st_size);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) recorded.rdev = st.st_rdev;
    restat_.erase(path);
    return recorded;
  }

  // record() of `base` in `parentFd`, as the disk has it.
  Try<RecordedEntry*> recordAt(const std::string& name, const std::string& path, int parentFd,
                               const std::string& base) {
    struct stat st {};
    if (::fstatat(parentFd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return entryError(name, "stat");
    return &record(path, st);
  }

  // Last, so that creating entries does not change them again.
  Try<Nothing> setDirectoryTimes() {
    forgetCache();
    for (auto it = dirTimes_.rbegin(); it != dirTimes_.rend(); ++it) {
      Fd fd = it->path.empty() ? Fd(actors::fs::duplicate(root_.get())) : openBeneath(it->path);
      if (!fd.valid()) continue;  // replaced by a later entry
      struct stat st {};
      if (::fstat(fd.get(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
      if (actors::fs::disk().futimens(fd.get(), it->times) != 0) return entryError(it->path, "set the directory times");
    }
    return Nothing{};
  }

  const std::string rootPath_;
  TarSource& source_;
  const ApplyOptions& options_;
  Fd root_;
  archive* archive_ = nullptr;
  std::optional<Error> sourceError_;
  ApplyResult result_;
  std::set<std::string> implied_;
  std::vector<DirTimes> dirTimes_;
  bool opaqueNext_ = false;
  mode_t umask_ = 07777;
  bool runningAsRoot_ = false;
  std::set<std::string> setgidDirs_;  // directories of this layer with the setgid bit
  std::set<std::string> restat_;      // entries the record takes from the disk at the end
  std::uint64_t filesBytes_ = 0;      // the sizes of the regular files so far, holes included
  ContentHash fileHash_;
  DirectWrites directWrites_;  // big files' writes (file_writer.hpp)
  Fd cacheFd_;
  std::string cachePath_;
  bool cacheValid_ = false;
};

}  // namespace

Try<ApplyResult> applyTar(const std::string& root, TarSource& source, const ApplyOptions& options) {
  return Applier(root, source, options).run();
}

}  // namespace prov::store
