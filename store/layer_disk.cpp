#include "store/layer_disk.hpp"

#include <fcntl.h>
#include <fts.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <mutex>
#include <set>
#include <sstream>
#include <utility>

#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include "actors/log.hpp"
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

// The directory `rel` as the nearest parent layer has it, if it has one.
bool settleFromParents(int dirFd, const std::string& rel, const std::vector<int>& parentFds) {
  for (int parentFd : parentFds) {
    const int fd = actors::fs::openBeneath(parentFd, rel, O_PATH | O_NOFOLLOW);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // not in this layer: look lower
      return true;                    // a symlink or file on the way hides it: the default stays
    }
    struct stat st {};
    const bool ok = ::fstat(fd, &st) == 0;
    ::close(fd);
    if (!ok) return false;
    if (!S_ISDIR(st.st_mode)) return true;  // a whiteout, file or symlink hides what is lower
    const timespec times[2] = {st.st_atim, st.st_mtim};
    return actors::fs::disk().fchown(dirFd, st.st_uid, st.st_gid) == 0 &&
           actors::fs::disk().fchmod(dirFd, st.st_mode & 07777) == 0 && actors::fs::disk().futimens(dirFd, times) == 0;
  }
  return true;
}

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
  std::vector<int> parentFds;
  for (const auto& parent : parentRootfses) {
    const int fd = actors::fs::disk().openat(AT_FDCWD, parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) parentFds.push_back(fd);
  }
  Try<Nothing> result = Nothing{};
  for (const auto& rel : impliedDirs) {
    const int dirFd = actors::fs::openBeneath(rootFd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (dirFd < 0) continue;  // replaced later in the layer
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
  for (int fd : parentFds) ::close(fd);
  ::close(rootFd);
  return result;
}

Try<std::int64_t> diskUsage(const std::string& root) {
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
  auto measured = diskUsage(rootfs);
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
  std::vector<RecentCommit> kept;
  for (auto& commit : readRecentCommits(journal)) {
    // Another boot's lines stay until recover has checked them.
    if (commit.at >= now - kRecentCommitSeconds || commit.bootId != currentBootId()) kept.push_back(std::move(commit));
  }
  kept.push_back(RecentCommit{now, currentBootId(), name});
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
      contents.layers.insert(paths::chainIdOfLayer(name));
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
