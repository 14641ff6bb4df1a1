#include "store/layer_disk.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fts.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include "actors/log.hpp"
#include "fetcher/digest.hpp"
#include "store/atomic_file.hpp"
#include "store/layer_record.hpp"
#include "store/paths.hpp"

namespace prov::store {

using actors::Error;
using actors::ErrorKind;

namespace {

Error ioError(const std::string& doing, const std::string& path, int error = errno) {
  return Error(ErrorKind::IO, "Failed to " + doing + " '" + path + "': " + std::strerror(error));
}

// How the layers below settle the directory `rel` that a layer only
// implies: Found (`st` is the directory as the nearest layer that has it
// has it), Default (no layer has it, or a whiteout, file or symlink in a
// nearer one hides what is lower: the extraction's default stays) or Failed.
enum class Resolved { Found, Default, Failed };
Resolved resolveFromParents(const std::string& rel, const std::vector<int>& parentFds, struct stat& st) {
  for (int parentFd : parentFds) {
    const int fd = actors::fs::openBeneath(parentFd, rel, O_PATH | O_NOFOLLOW);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // not in this layer: look lower
      // A symlink or file on the way hides it; anything else is a failure.
      return errno == ENOTDIR || errno == ELOOP || errno == EXDEV ? Resolved::Default : Resolved::Failed;
    }
    const bool ok = ::fstat(fd, &st) == 0;
    ::close(fd);
    if (!ok) return Resolved::Failed;
    return S_ISDIR(st.st_mode) ? Resolved::Found : Resolved::Default;
  }
  return Resolved::Default;
}

// The directory `rel` as the nearest parent layer has it, if it has one.
bool settleFromParents(int dirFd, const std::string& rel, const std::vector<int>& parentFds) {
  struct stat st {};
  const Resolved resolved = resolveFromParents(rel, parentFds, st);
  if (resolved != Resolved::Found) return resolved == Resolved::Default;
  const timespec times[2] = {st.st_atim, st.st_mtim};
  return actors::fs::disk().fchown(dirFd, st.st_uid, st.st_gid) == 0 &&
         actors::fs::disk().fchmod(dirFd, st.st_mode & 07777) == 0 && actors::fs::disk().futimens(dirFd, times) == 0;
}

// The parent layers' root directories opened, nearest first; closed with
// the object. One that does not open is an error (`failed`): skipping it
// would settle against the wrong layer.
struct ParentDirs {
  explicit ParentDirs(const std::vector<std::string>& rootfses) {
    for (const auto& parent : rootfses) {
      const int fd = actors::fs::disk().openat(AT_FDCWD, parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) {
        failed = ioError("open the layer below", parent);
        return;
      }
      fds.push_back(fd);
    }
  }
  std::optional<Error> failed;
  ~ParentDirs() {
    for (int fd : fds) ::close(fd);
  }
  ParentDirs(const ParentDirs&) = delete;
  ParentDirs& operator=(const ParentDirs&) = delete;
  std::vector<int> fds;
};

}  // namespace

Try<Nothing> makeDirectories(const std::vector<std::string>& dirs) {
  for (const auto& dir : dirs) {
    auto made = actors::fs::makeDirectories(dir);
    if (made.isError()) return made.error();
  }
  return Nothing{};
}

Try<Nothing> makeStoreDirectories(const std::string& storeDir, const std::vector<std::string>& dirs) {
  auto made = actors::fs::makePrivateDirectory(storeDir, 0700);
  if (made.isError()) return made.error();
  made = makeDirectories(dirs);
  if (made.isError()) return made;
  // Before the first commit with records.
  return markRecordsSince(storeDir);
}

Try<Nothing> emptyDirectory(const std::string& dir) {
  for (const auto& name : actors::fs::listDirectory(dir)) {
    auto removed = actors::fs::removeTree(dir + "/" + name);
    if (removed.isError()) return removed.error();
  }
  return Nothing{};
}

Try<Nothing> settleImpliedDirs(const std::string& rootfs, const std::vector<std::string>& impliedDirs,
                               const std::vector<std::string>& parentRootfses, bool sync) {
  const int rootFd = actors::fs::disk().openat(AT_FDCWD, rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rootFd < 0) return ioError("open the staged layer", rootfs);
  const ParentDirs parents(parentRootfses);
  const std::vector<int>& parentFds = parents.fds;
  Try<Nothing> result = Nothing{};
  if (parents.failed) result = *parents.failed;
  for (const auto& rel : result.isSome() ? impliedDirs : std::vector<std::string>{}) {
    const int dirFd = actors::fs::openBeneath(rootFd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (dirFd < 0) {
      // Replaced later in the layer (by a file, or below a symlink).
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;
      result = ioError("open the implied directory '" + rel + "' of", rootfs);
      break;
    }
    const bool settled = settleFromParents(dirFd, rel, parentFds);
    ::close(dirFd);
    if (!settled) {
      result = ioError("settle the implied directory '" + rel + "' of", rootfs);
      break;
    }
  }
  // Their entries in the record, as settled.
  if (result.isSome() && !impliedDirs.empty()) result = refreshRecord(rootfs, impliedDirs);
  if (result.isSome() && sync && ::syncfs(rootFd) != 0) result = ioError("sync", rootfs);
  ::close(rootFd);
  return result;
}

Try<std::int64_t> diskUsage(const std::string& root, bool directoriesOnly) {
  std::string path = root;
  char* const roots[] = {path.data(), nullptr};
  FTS* walk = ::fts_open(roots, FTS_PHYSICAL | FTS_NOCHDIR | FTS_XDEV, nullptr);
  if (walk == nullptr) return ioError("measure", root);
  std::int64_t bytes = 0;
  std::set<std::pair<dev_t, ino_t>> linked;  // files with several links, counted once
  Try<std::int64_t> result = std::int64_t{0};
  for (;;) {
    errno = 0;
    FTSENT* entry = ::fts_read(walk);
    if (entry == nullptr) {  // the end, or an error
      if (errno != 0) result = ioError("measure", root);
      break;
    }
    if (entry->fts_info == FTS_DP) continue;  // a directory on the way out: counted on the way in
    if (entry->fts_info == FTS_DNR || entry->fts_info == FTS_ERR || entry->fts_info == FTS_NS) {
      result = ioError("measure", entry->fts_path, entry->fts_errno);
      break;
    }
    const struct stat& st = *entry->fts_statp;
    if (directoriesOnly && !S_ISDIR(st.st_mode)) continue;
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 && !linked.emplace(st.st_dev, st.st_ino).second) continue;
    bytes += static_cast<std::int64_t>(st.st_blocks) * 512;
  }
  ::fts_close(walk);
  if (result.isError()) return result;
  return bytes;
}

Try<std::int64_t> contentBytes(const std::string& rootfs) {
  const std::string file = paths::usageOf(rootfs);
  if (auto text = actors::fs::readFile(file); text.isSome()) {
    std::int64_t bytes = -1;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), bytes);
    if (ec == std::errc() && bytes >= 0 && (end == text->data() + text->size() || *end == '\n')) return bytes;
  }
  // A variant (layers/<seed>-<hex>/rootfs; not an AppC image's directory).
  const std::string dir = rootfs.substr(0, rootfs.rfind('/'));
  const std::string id = paths::layerIdOf(dir);
  const bool variant = paths::baseName(dir.substr(0, dir.rfind('/'))) == "layers" && paths::seedOf(id) != id;
  auto measured = diskUsage(rootfs, variant);
  if (measured.isError()) return measured;
  // A full or read-only disk: the figure holds all the same (measured again
  // by the next process).
  if (auto written = writeFileAtomically(file, std::to_string(*measured) + "\n", false); written.isError()) {
    actors::log(actors::LogLevel::Warn, "store.usage_write_failed", {{"error", written.error().message}});
  }
  return measured;
}

// Each of `rootfses`' bytes on disk (contentBytes); one that cannot be
// measured (gone meanwhile, unreadable) is left out and logged.
std::map<std::string, std::int64_t> measureContent(const std::vector<std::string>& rootfses) {
  std::map<std::string, std::int64_t> measured;
  for (const auto& rootfs : rootfses) {
    auto bytes = contentBytes(rootfs);
    if (bytes.isSome()) {
      measured[rootfs] = *bytes;
    } else {
      actors::log(actors::LogLevel::Warn, "store.measure_failed", {{"error", bytes.error().message}});
    }
  }
  return measured;
}

namespace {

// The extended attributes of the open `from` set on the open `to`.
bool copyXattrs(int from, int to) {
  ssize_t size = ::flistxattr(from, nullptr, 0);
  if (size <= 0) return size == 0 || errno == ENOTSUP;
  std::string names(static_cast<std::size_t>(size), '\0');
  size = ::flistxattr(from, names.data(), names.size());
  if (size < 0) return false;
  names.resize(static_cast<std::size_t>(size));
  std::string value;
  for (std::size_t at = 0; at < names.size(); at += std::strlen(names.c_str() + at) + 1) {
    const char* name = names.c_str() + at;
    const ssize_t length = ::fgetxattr(from, name, nullptr, 0);
    if (length < 0) return false;
    value.resize(static_cast<std::size_t>(length));
    const ssize_t got = ::fgetxattr(from, name, value.data(), value.size());
    if (got < 0 || actors::fs::disk().fsetxattr(to, name, value.data(), static_cast<std::size_t>(got), 0) != 0)
      return false;
  }
  return true;
}

// The open directory `to` given the open `from`'s xattrs, owner, mode and
// times (in that order: the mode after the owner, which may clear setgid).
bool copyDirectoryMetadata(int from, int to) {
  struct stat st {};
  if (::fstat(from, &st) != 0 || !copyXattrs(from, to)) return false;
  const timespec times[2] = {st.st_atim, st.st_mtim};
  return actors::fs::disk().fchown(to, st.st_uid, st.st_gid) == 0 &&
         actors::fs::disk().fchmod(to, st.st_mode & 07777) == 0 && actors::fs::disk().futimens(to, times) == 0;
}

// linkTree below the open directories `from` and `to`.
Try<Nothing> linkChildren(int from, int to, const std::string& fromPath) {
  const int listed = ::dup(from);
  if (listed < 0) return ioError("read the directory", fromPath);
  DIR* dir = ::fdopendir(listed);
  if (dir == nullptr) {
    ::close(listed);
    return ioError("read the directory", fromPath);
  }
  Try<Nothing> result = Nothing{};
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(dir);
    if (entry == nullptr) {
      if (errno != 0) result = ioError("read the directory", fromPath);
      break;
    }
    const char* name = entry->d_name;
    if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) continue;
    const std::string path = fromPath + "/" + name;
    struct stat st {};
    if (::fstatat(from, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      result = ioError("stat", path);
      break;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (actors::fs::disk().linkat(from, name, to, name, 0) != 0) {
        result = ioError("link", path);
        break;
      }
      continue;
    }
    if (actors::fs::disk().mkdirat(to, name, 0700) != 0) {
      result = ioError("make the directory for", path);
      break;
    }
    actors::fs::Fd child(actors::fs::disk().openat(from, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    actors::fs::Fd made(actors::fs::disk().openat(to, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!child.valid() || !made.valid()) {
      result = ioError("open", path);
      break;
    }
    result = linkChildren(child.get(), made.get(), path);
    if (result.isError()) break;
    // After its children: making them moved its times.
    if (!copyDirectoryMetadata(child.get(), made.get())) {
      result = ioError("copy the owner, mode, times and attributes of", path);
      break;
    }
  }
  ::closedir(dir);
  return result;
}

}  // namespace

Try<Nothing> linkTree(const std::string& from, const std::string& to) {
  actors::fs::Fd source(
      actors::fs::disk().openat(AT_FDCWD, from.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!source.valid()) return ioError("open", from);
  if (actors::fs::disk().mkdirat(AT_FDCWD, to.c_str(), 0700) != 0) return ioError("make", to);
  actors::fs::Fd target(
      actors::fs::disk().openat(AT_FDCWD, to.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!target.valid()) return ioError("open", to);
  auto linked = linkChildren(source.get(), target.get(), from);
  if (linked.isError()) return linked;
  if (!copyDirectoryMetadata(source.get(), target.get()))
    return ioError("copy the owner, mode, times and attributes of", from);
  return Nothing{};
}

Try<Nothing> commitSeed(const std::string& stagingDir, const std::string& rootfs,
                        const std::vector<std::string>& impliedDirs, const std::string& layerDir, bool sync,
                        const std::string& journal) {
  std::string listed;
  for (const auto& dir : impliedDirs) listed += dir + "\n";
  auto written = writeFileAtomically(paths::impliedOf(rootfs), listed, false);
  if (written.isError()) return written;
  return commitLayer(stagingDir, rootfs, {}, {}, layerDir, sync, journal);
}

Try<std::vector<std::string>> readImplied(const std::string& layerDir) {
  auto text = actors::fs::readFile(paths::impliedOf(layerDir + "/rootfs"));
  if (text.isError()) return text.error();
  std::vector<std::string> dirs;
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) dirs.push_back(line);
  }
  return dirs;
}

Try<std::string> settlementOf(const std::vector<std::string>& impliedDirs,
                              const std::vector<std::string>& parentRootfses) {
  const ParentDirs parents(parentRootfses);
  if (parents.failed) return *parents.failed;
  std::string settled;
  bool any = false;
  for (const auto& rel : impliedDirs) {
    struct stat st {};
    settled += rel;
    settled += '\0';
    switch (resolveFromParents(rel, parents.fds, st)) {
      case Resolved::Failed: return ioError("look up the directory '" + rel + "' below", parentRootfses.front());
      case Resolved::Default: settled += "-\n"; break;
      case Resolved::Found:
        // Not the access time: reading a layer moves it.
        any = true;
        settled += std::to_string(st.st_uid) + " " + std::to_string(st.st_gid) + " " +
                   std::to_string(st.st_mode & 07777) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
                   std::to_string(st.st_mtim.tv_nsec) + "\n";
        break;
    }
  }
  if (!any) return std::string();
  return paths::hexOf(fetcher::sha256Digest(settled)).substr(0, 16);
}

Try<Placement> placeLayer(const std::string& storeDir, const std::string& seedId,
                          const std::vector<std::string>& parentRootfses, bool sync, const std::string& journal) {
  const std::string seedDir = paths::layer(storeDir, seedId);
  auto implied = readImplied(seedDir);
  if (implied.isError()) {
    return Error(ErrorKind::IO,
                 "Failed to read the directories the layer '" + seedDir + "' implies: " + implied.error().message);
  }
  if (implied->empty()) return Placement{seedId, false};
  auto settled = settlementOf(*implied, parentRootfses);
  if (settled.isError()) return settled.error();
  if (settled->empty()) return Placement{seedId, false};
  const std::string id = seedId + "-" + *settled;
  const std::string layerDir = paths::layer(storeDir, id);
  struct stat st {};
  if (::stat(paths::layerRootfs(storeDir, id).c_str(), &st) == 0) return Placement{id, false};

  const std::string staging = paths::randomChild(paths::staging(storeDir));
  if (actors::fs::disk().mkdirat(AT_FDCWD, staging.c_str(), 0700) != 0) return ioError("make", staging);
  const std::string rootfs = paths::stagedRootfs(staging);
  const std::string seedRootfs = seedDir + "/rootfs";
  Try<Nothing> made = linkTree(seedRootfs, rootfs);
  // Its record and implied list are the seed's, the settled entries taken
  // again by the commit's settling.
  for (const auto& [from, to] : {std::pair{paths::recordOf(seedRootfs), paths::recordOf(rootfs)},
                                 std::pair{paths::impliedOf(seedRootfs), paths::impliedOf(rootfs)}}) {
    if (made.isError()) break;
    auto text = actors::fs::readFile(from);
    if (text.isError()) {
      if (text.error().kind == ErrorKind::NotFound) continue;  // a seed without a record: so is the variant
      made = text.error();
      break;
    }
    made = writeFileAtomically(to, *text, false);
  }
  if (made.isSome()) made = commitLayer(staging, rootfs, *implied, parentRootfses, layerDir, sync, journal);
  if (made.isError()) {
    (void)actors::fs::removeTree(staging);
    return made.error();
  }
  return Placement{id, true};
}

std::string currentBootId() {
  auto id = actors::fs::readKernelFile("/proc/sys/kernel/random/boot_id");
  if (id.isError()) return "";
  std::string text = *id;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::vector<RecentCommit> readRecentCommits(const std::string& journal) {
  std::vector<RecentCommit> commits;
  auto text = actors::fs::readFile(journal);
  if (text.isError()) return commits;
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    RecentCommit commit;
    if (fields >> commit.at >> commit.bootId >> commit.name) commits.push_back(std::move(commit));
  }
  return commits;
}

Try<Nothing> writeRecentCommits(const std::string& journal, const std::vector<RecentCommit>& commits) {
  std::string text;
  for (const auto& c : commits) text += std::to_string(c.at) + " " + c.bootId + " " + c.name + "\n";
  return writeFileAtomically(journal, text, false);
}

Try<Nothing> noteCommit(const std::string& journal, const std::string& name) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  static const std::string boot = currentBootId();
  std::vector<RecentCommit> kept;
  for (auto& commit : readRecentCommits(journal)) {
    // Another boot's lines stay until recover has checked them.
    if (commit.at >= now - kRecentCommitSeconds || commit.bootId != boot) kept.push_back(std::move(commit));
  }
  kept.push_back(RecentCommit{now, boot, name});
  return writeRecentCommits(journal, kept);
}

Try<Nothing> commitLayer(const std::string& stagingDir, const std::string& rootfs,
                         const std::vector<std::string>& impliedDirs, const std::vector<std::string>& parentRootfses,
                         const std::string& layerDir, bool sync, const std::string& journal) {
  auto settled = settleImpliedDirs(rootfs, impliedDirs, parentRootfses, false);
  if (settled.isError()) return settled;
  if (!journal.empty()) {
    auto noted = noteCommit(journal, paths::baseName(layerDir));
    if (noted.isError()) return noted;
  }
  if (sync) {
    actors::fs::Fd fd(actors::fs::disk().openat(AT_FDCWD, rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid() || ::syncfs(fd.get()) != 0) return ioError("sync", rootfs);
  }

  if (actors::fs::disk().renameat(AT_FDCWD, stagingDir.c_str(), AT_FDCWD, layerDir.c_str()) != 0) {
    if (errno != EEXIST && errno != ENOTEMPTY) return ioError("commit the layer to", layerDir);
    auto removed = actors::fs::removeTree(stagingDir);  // committed by someone else
    if (removed.isError()) return removed.error();
  }
  const auto slash = layerDir.rfind('/');
  return syncDirectory(layerDir.substr(0, slash));
}

Try<StoreContents> recoverStoreDirs(const std::string& storeDir) {
  auto made = makeStoreDirectories(storeDir, paths::directories(storeDir));
  if (made.isError()) return made.error();
  auto staged = emptyDirectory(paths::staging(storeDir));
  if (staged.isError()) return staged.error();
  auto swept = sweepGc(storeDir);
  if (swept.isError()) return swept.error();
  for (const auto& dir : {storeDir, paths::configs(storeDir)}) {
    if (auto removed = removeStaleTemporaries(dir); removed.isError()) return removed.error();
  }
  StoreContents contents;
  for (const auto& name : actors::fs::listDirectory(paths::layers(storeDir))) {
    struct stat st {};
    if (::stat(paths::layerRootfs(storeDir, name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      const std::string id = paths::layerIdOf(name);
      if (::stat(paths::retiredIn(paths::layer(storeDir, id)).c_str(), &st) == 0) {
        contents.retired.insert(id);
        continue;
      }
      contents.layers.insert(id);
      if (name.find('-') == std::string::npos &&
          ::stat(paths::impliedOf(paths::layerRootfs(storeDir, id)).c_str(), &st) != 0) {
        contents.unmarked.insert(id);
      }
      // A usage file whose write a crash cut short.
      if (auto removed = removeStaleTemporaries(paths::layer(storeDir, name)); removed.isError()) {
        return removed.error();
      }
    }
  }
  for (const auto& name : actors::fs::listDirectory(paths::configs(storeDir))) {
    if (name.find(".tmp-") == std::string::npos) contents.configs.insert(name);
  }
  return contents;
}

Try<std::vector<std::string>> markForGc(const std::string& storeDir, const std::vector<std::string>& paths) {
  std::vector<std::string> marked;
  for (const auto& path : paths) {
    const std::string target = paths::randomChild(paths::gc(storeDir));
    if (actors::fs::disk().renameat(AT_FDCWD, path.c_str(), AT_FDCWD, target.c_str()) != 0) {
      if (errno == ENOENT) continue;
      return ioError("move into gc/", path);
    }
    marked.push_back(paths::baseName(target));
  }
  if (!marked.empty()) {
    auto synced = syncDirectory(paths::gc(storeDir));
    if (synced.isError()) return synced.error();
  }
  return marked;
}

Try<Nothing> sweepGc(const std::string& storeDir) { return emptyDirectory(paths::gc(storeDir)); }

}  // namespace prov::store
