#include "store/layer_record.hpp"

#include <fcntl.h>
#include <fts.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <utility>

#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>

#include "messages/record.pb.h"
#include "store/atomic_file.hpp"
#include "store/paths.hpp"

// Header-only: the hash is inlined where it runs, and nothing is linked.
// Where the CPU has AVX2, updates go to content_hash_avx2.cpp's copy.
#define XXH_INLINE_ALL
#include <xxhash.h>
#if defined(PROV_XXH3_AVX2)
#include <cpuid.h>

#include "store/content_hash_avx2.hpp"
#endif

namespace prov::store {

using actors::Error;
using actors::ErrorKind;

#if defined(PROV_XXH3_AVX2)
namespace {

// Whether the CPU has AVX2 and the kernel saves its registers: CPUID.7.0
// EBX bit 5, with OSXSAVE and XCR0's SSE and AVX bits. Asked once, at the
// first update, not at start: cpuid traps to the hypervisor in a VM, and
// libgcc's __builtin_cpu_supports runs a constructor that asks a dozen
// leaves in every command (about 30 us here). (glibc's CPU_FEATURE_ACTIVE
// would do, but its header is C only: clang refuses its _Bool.)
bool hasAvx2() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0 || (c & bit_OSXSAVE) == 0 || (c & bit_AVX) == 0) return false;
  unsigned low = 0, high = 0;  // XCR0's low and high halves; only the low matters
  __asm__("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  (void)high;
  if ((low & 0x6) != 0x6) return false;  // XMM and YMM state
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  return (b & bit_AVX2) != 0;
}

}  // namespace
#endif

struct ContentHash::State {
  XXH3_state_t xxh;
};

ContentHash::ContentHash() : state_(std::make_unique<State>()) { reset(); }
ContentHash::~ContentHash() = default;
void ContentHash::reset() { XXH3_64bits_reset(&state_->xxh); }
void ContentHash::update(const void* data, std::size_t size) {
#if defined(PROV_XXH3_AVX2)
  static_assert(sizeof(XXH3_state_t) == detail::kXxh3StateBytes);
  static const bool avx2 = hasAvx2();
  if (avx2) return detail::xxh3UpdateAvx2(&state_->xxh, data, size);
#endif
  XXH3_64bits_update(&state_->xxh, data, size);
}
void ContentHash::zeros(std::uint64_t count) {
  static const std::array<char, 65536> kZeros{};
  while (count > 0) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(count, kZeros.size()));
    update(kZeros.data(), n);
    count -= n;
  }
}
std::uint64_t ContentHash::digest() const { return XXH3_64bits_digest(&state_->xxh); }

namespace {

constexpr std::uint32_t kRecordVersion = 1;
constexpr std::size_t kReadBuffer = 1 << 20;

Error ioError(const std::string& doing, const std::string& path, int error = errno) {
  return Error(ErrorKind::IO, "Failed to " + doing + " '" + path + "': " + std::strerror(error));
}

// The root hash: every entry in path order, in a fixed encoding (the path
// and target each end in a NUL; the numbers are 8 bytes, little-endian).
std::uint64_t rootHashOf(const LayerRecord& record) {
  ContentHash hash;
  const char nul = '\0';
  for (const auto& [path, e] : record) {
    hash.update(path.data(), path.size());
    hash.update(&nul, 1);
    for (std::uint64_t value :
         {std::uint64_t{e.mode}, std::uint64_t{e.uid}, std::uint64_t{e.gid}, e.size, e.hash, e.rdev}) {
      unsigned char bytes[8];
      for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(value >> (8 * i));
      hash.update(bytes, sizeof bytes);
    }
    hash.update(e.target.data(), e.target.size());
    hash.update(&nul, 1);
  }
  return hash.digest();
}

// XXH3-64 of the regular file open as `fd`; adds what it read to `bytes`.
Try<std::uint64_t> hashFile(int fd, const std::string& shown, std::uint64_t& bytes) {
  static thread_local std::unique_ptr<char[]> buffer(new char[kReadBuffer]);
  ContentHash hash;
  for (;;) {
    const ssize_t n = actors::fs::disk().read(fd, buffer.get(), kReadBuffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ioError("read", shown);
    if (n == 0) break;
    hash.update(buffer.get(), static_cast<std::size_t>(n));
    bytes += static_cast<std::uint64_t>(n);
  }
  return hash.digest();
}

// The entry for `name` in directory `dirFd` as the disk has it (its bytes
// hashed when it is a regular file).
Try<RecordedEntry> entryOnDisk(int dirFd, const std::string& name, const struct stat& st, const std::string& shown,
                               std::uint64_t& bytes) {
  RecordedEntry e;
  e.mode = st.st_mode;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  if (S_ISREG(st.st_mode)) {
    e.size = static_cast<std::uint64_t>(st.st_size);
    actors::fs::Fd fd(
        actors::fs::disk().openat(dirFd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME | O_NOCTTY));
    if (!fd.valid() && errno == EPERM) {  // O_NOATIME on a file that is not ours
      fd = actors::fs::Fd(actors::fs::disk().openat(dirFd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (!fd.valid()) return ioError("open", shown);
    auto hashed = hashFile(fd.get(), shown, bytes);
    if (hashed.isError()) return hashed.error();
    e.hash = *hashed;
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(static_cast<std::size_t>(st.st_size) + 1, '\0');
    const ssize_t n = ::readlinkat(dirFd, name.c_str(), target.data(), target.size());
    if (n < 0) return ioError("read the symlink", shown);
    target.resize(static_cast<std::size_t>(n));
    e.size = target.size();
    e.target = std::move(target);
  } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    e.rdev = st.st_rdev;
  }
  return e;
}

// Calls visit(rel, parentFd, name, stat) for each entry of the tree at
// `rootfs`, the root first ("", -1, "" then). Does not follow symlinks or
// leave the file system. An entry that cannot be read is an IO error.
template <typename Visit>
Try<Nothing> walkTree(const std::string& rootfs, Visit&& visit) {
  std::string path = rootfs;
  char* const roots[] = {path.data(), nullptr};
  FTS* walk = ::fts_open(roots, FTS_PHYSICAL | FTS_NOCHDIR | FTS_XDEV, nullptr);
  if (walk == nullptr) return ioError("walk", rootfs);
  Try<Nothing> result = Nothing{};
  for (;;) {
    errno = 0;
    FTSENT* entry = ::fts_read(walk);
    if (entry == nullptr) {
      if (errno != 0) result = ioError("walk", rootfs);
      break;
    }
    if (entry->fts_info == FTS_DP) continue;
    if (entry->fts_info == FTS_DNR || entry->fts_info == FTS_ERR || entry->fts_info == FTS_NS) {
      result = ioError("read", entry->fts_path, entry->fts_errno);
      break;
    }
    const std::string full(entry->fts_path, entry->fts_pathlen);
    const std::string rel = full.size() > rootfs.size() ? full.substr(rootfs.size() + 1) : std::string();
    auto visited = visit(rel, full, *entry->fts_statp);
    if (visited.isError()) {
      result = visited;
      break;
    }
  }
  ::fts_close(walk);
  return result;
}

std::string shownPath(const std::string& rel) { return "/" + rel; }

std::string octal(std::uint32_t mode) {
  char text[16];
  std::snprintf(text, sizeof text, "%04o", mode & 07777);
  return text;
}

std::string typeName(std::uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "a file";
    case S_IFDIR: return "a directory";
    case S_IFLNK: return "a symlink";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFIFO: return "a fifo";
    case S_IFSOCK: return "a socket";
    default: return "an entry of type " + std::to_string(mode & S_IFMT);
  }
}

// How `disk` differs from `recorded` (empty: it does not).
std::vector<std::string> differences(const RecordedEntry& recorded, const RecordedEntry& disk) {
  std::vector<std::string> found;
  if ((recorded.mode & S_IFMT) != (disk.mode & S_IFMT)) {
    found.push_back("now " + typeName(disk.mode) + ", recorded as " + typeName(recorded.mode));
    return found;
  }
  if (!S_ISLNK(disk.mode) && (recorded.mode & 07777) != (disk.mode & 07777)) {
    found.push_back("mode " + octal(disk.mode) + ", recorded " + octal(recorded.mode));
  }
  if (recorded.uid != disk.uid || recorded.gid != disk.gid) {
    found.push_back("owner " + std::to_string(disk.uid) + ":" + std::to_string(disk.gid) + ", recorded " +
                    std::to_string(recorded.uid) + ":" + std::to_string(recorded.gid));
  }
  if (S_ISREG(disk.mode)) {
    if (recorded.size != disk.size) {
      found.push_back("size " + std::to_string(disk.size) + ", recorded " + std::to_string(recorded.size));
    } else if (recorded.hash != disk.hash) {
      found.push_back("content differs from the record");
    }
  }
  if (S_ISLNK(disk.mode) && recorded.target != disk.target) {
    found.push_back("target '" + disk.target + "', recorded '" + recorded.target + "'");
  }
  if ((S_ISCHR(disk.mode) || S_ISBLK(disk.mode)) && recorded.rdev != disk.rdev) {
    found.push_back("device number differs from the record");
  }
  return found;
}

// The entry at `full` (a path on disk) as the disk has it. The store is
// root's alone (0700): nothing swaps a directory on the way for a symlink.
Try<RecordedEntry> entryAt(const std::string& full, const struct stat& st, std::uint64_t& bytes) {
  return entryOnDisk(AT_FDCWD, full, st, full, bytes);
}

}  // namespace

Try<Nothing> writeRecord(const std::string& file, const LayerRecord& record, bool sync) {
  // Entry by entry into the encoding of a LayerRecord: a layer of many
  // small files does not hold its record twice in memory.
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream raw(&bytes);
    google::protobuf::io::CodedOutputStream out(&raw);
    out.WriteTag(google::protobuf::internal::WireFormatLite::MakeTag(
        messages::LayerRecord::kVersionFieldNumber, google::protobuf::internal::WireFormatLite::WIRETYPE_VARINT));
    out.WriteVarint32(kRecordVersion);
    messages::RecordEntry entry;
    std::string encoded;
    for (const auto& [path, e] : record) {
      entry.Clear();
      entry.set_path(path);
      entry.set_mode(e.mode);
      entry.set_uid(e.uid);
      entry.set_gid(e.gid);
      entry.set_size(e.size);
      entry.set_content_hash(e.hash);
      if (!e.target.empty()) entry.set_target(e.target);
      entry.set_rdev(e.rdev);
      encoded.clear();
      entry.SerializeToString(&encoded);
      out.WriteTag(google::protobuf::internal::WireFormatLite::MakeTag(
          messages::LayerRecord::kEntriesFieldNumber,
          google::protobuf::internal::WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
      out.WriteVarint32(static_cast<std::uint32_t>(encoded.size()));
      out.WriteString(encoded);
    }
    out.WriteTag(google::protobuf::internal::WireFormatLite::MakeTag(
        messages::LayerRecord::kRootHashFieldNumber, google::protobuf::internal::WireFormatLite::WIRETYPE_FIXED64));
    out.WriteLittleEndian64(rootHashOf(record));
    if (out.HadError()) return Error(ErrorKind::Internal, "Failed to encode the record '" + file + "'");
  }
  return writeFileAtomically(file, bytes, sync);
}

Try<LayerRecord> readRecord(const std::string& file) {
  auto bytes = actors::fs::readFile(file);
  if (bytes.isError()) return bytes.error();
  messages::LayerRecord message;
  if (!message.ParseFromString(*bytes) || message.version() != kRecordVersion) {
    return Error(ErrorKind::Corruption, "The record '" + file + "' is damaged: it does not parse");
  }
  LayerRecord record;
  for (auto& entry : *message.mutable_entries()) {
    RecordedEntry e;
    e.mode = entry.mode();
    e.uid = entry.uid();
    e.gid = entry.gid();
    e.size = entry.size();
    e.hash = entry.content_hash();
    e.rdev = entry.rdev();
    e.target = std::move(*entry.mutable_target());
    record.emplace_hint(record.end(), std::move(*entry.mutable_path()), std::move(e));
  }
  if (rootHashOf(record) != message.root_hash()) {
    return Error(ErrorKind::Corruption, "The record '" + file + "' is damaged: its root hash does not match");
  }
  return record;
}

Try<LayerRecord> recordTree(const std::string& rootfs) {
  LayerRecord record;
  std::uint64_t bytes = 0;
  auto walked = walkTree(rootfs,
                         [&](const std::string& rel, const std::string& full, const struct stat& st) -> Try<Nothing> {
                           auto e = entryAt(full, st, bytes);
                           if (e.isError()) return e.error();
                           record[rel] = std::move(*e);
                           return Nothing{};
                         });
  if (walked.isError()) return walked.error();
  return record;
}

Try<Nothing> restatEntries(const std::string& rootfs, const std::vector<std::string>& paths, LayerRecord& record) {
  // Relative to the root, each entry's parent opened beneath it: a path
  // deep in a layer may be longer than PATH_MAX with the store's prefix.
  actors::fs::Fd root(actors::fs::disk().openat(AT_FDCWD, rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return ioError("open", rootfs);
  std::uint64_t bytes = 0;
  for (const auto& rel : paths) {
    const auto slash = rel.rfind('/');
    const std::string parent = slash == std::string::npos ? "" : rel.substr(0, slash);
    const std::string name = rel.empty() ? "." : rel.substr(slash == std::string::npos ? 0 : slash + 1);
    actors::fs::Fd dir(parent.empty() ? actors::fs::duplicate(root.get())
                                      : actors::fs::openBeneath(root.get(), parent, O_RDONLY | O_DIRECTORY));
    struct stat st {};
    if (!dir.valid() || ::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT && errno != ENOTDIR) return ioError("stat", shownPath(rel) + "' in '" + rootfs);
      record.erase(rel);
      continue;
    }
    auto e = entryOnDisk(dir.get(), name, st, rootfs + "/" + rel, bytes);
    if (e.isError()) return e.error();
    record[rel] = std::move(*e);
  }
  return Nothing{};
}

Try<Nothing> refreshRecord(const std::string& rootfs, const std::vector<std::string>& paths) {
  const std::string file = paths::recordOf(rootfs);
  auto record = readRecord(file);
  if (record.isError()) return record.error().kind == ErrorKind::NotFound ? Try<Nothing>(Nothing{}) : record.error();
  auto restated = restatEntries(rootfs, paths, *record);
  if (restated.isError()) return restated;
  return writeRecord(file, *record, false);
}

Try<Nothing> markRecordsSince(const std::string& storeDir) {
  const std::string file = storeDir + "/records-since";
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0) return Nothing{};
  // Made in place with O_EXCL, not through a temporary: what counts is its
  // mtime, not its text, and commands that open one store at once make it
  // together while the one that holds the work dir sweeps the store's
  // temporaries (a temporary of another's could go before its rename).
  auto& disk = actors::fs::disk();
  const int fd = disk.openat(AT_FDCWD, file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (errno == EEXIST) return Nothing{};  // another made it
    return Error(ErrorKind::IO, "Failed to make '" + file + "': " + std::strerror(errno));
  }
  // Not synced here (two journal commits, a few ms of every first run):
  // it only matters once a layer is committed after it, and each commit
  // syncs the file system (syncfs, commitLayer) before its layer becomes
  // visible, this file with it. One lost before any commit is made again
  // by the next open, with no layer it could misjudge. A store whose
  // commits do not sync (ImageStoreOptions::syncLayers false, for
  // benchmarks) promises nothing after a crash: neither the records nor
  // this file.
  const std::string text = "Layers committed after this file was made have a record beside them.\n";
  const bool written = disk.write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int saved = errno;
  ::close(fd);
  if (!written) return Error(ErrorKind::IO, "Failed to write '" + file + "': " + std::strerror(saved));
  return Nothing{};
}

Try<timespec> recordsSince(const std::string& storeDir) {
  const std::string file = storeDir + "/records-since";
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    return Error(ErrorKind::Corruption, "The store's '" + file + "' is gone (" + std::strerror(errno) +
                                            "): which layers are from before records is unknown; a restart makes "
                                            "it again, taking every layer without a record as one");
  }
  return st.st_mtim;
}

ContentCheck checkContent(const std::string& rootfs, const timespec& since) {
  ContentCheck check;
  check.rootfs = rootfs;
  const std::string file = paths::recordOf(rootfs);
  struct stat before {};
  if (::stat(rootfs.c_str(), &before) != 0) {
    check.error = errno == ENOENT ? "Its directory '" + rootfs + "' is missing" : ioError("stat", rootfs).message;
    return check;
  }
  auto record = readRecord(file);
  const bool fromBefore = before.st_ctim.tv_sec < since.tv_sec ||
                          (before.st_ctim.tv_sec == since.tv_sec && before.st_ctim.tv_nsec < since.tv_nsec);
  if (record.isError() && record.error().kind == ErrorKind::NotFound && fromBefore) {
    // Committed before records: recorded as it stands, from now on checked.
    auto made = recordTree(rootfs);
    if (made.isSome()) {
      check.entries = made->size();
      auto written = writeRecord(file, *made, true);
      if (written.isSome()) {
        check.adopted = true;
        return check;
      }
      check.error = written.error().message;
    } else {
      check.error = made.error().message;
    }
  } else if (record.isError() && record.error().kind == ErrorKind::NotFound) {
    check.error = "Its record '" + file + "' is missing (it was committed with one)";
  } else if (record.isError()) {
    check.error = record.error().message;
  } else {
    // A file with several links is read once.
    std::map<std::pair<dev_t, ino_t>, std::uint64_t> linked;
    auto walked = walkTree(
        rootfs, [&](const std::string& rel, const std::string& full, const struct stat& st) -> Try<Nothing> {
          ++check.entries;
          auto it = record->find(rel);
          if (it == record->end()) {
            check.damage.push_back({shownPath(rel), "added (" + typeName(st.st_mode) + " the record does not have)"});
            return Nothing{};
          }
          RecordedEntry disk;
          const auto key = std::make_pair(st.st_dev, st.st_ino);
          if (S_ISREG(st.st_mode) && st.st_nlink > 1 && linked.count(key) > 0) {
            disk = RecordedEntry{st.st_mode,  st.st_uid, st.st_gid, static_cast<std::uint64_t>(st.st_size),
                                 linked[key], 0,         {}};
          } else {
            auto e = entryAt(full, st, check.bytes);
            if (e.isError()) return e.error();
            disk = std::move(*e);
            if (S_ISREG(st.st_mode) && st.st_nlink > 1) linked[key] = disk.hash;
          }
          for (auto& what : differences(it->second, disk)) check.damage.push_back({shownPath(rel), std::move(what)});
          record->erase(it);  // what is left at the end is missing
          return Nothing{};
        });
    if (walked.isError()) {
      check.error = walked.error().message;
    } else {
      for (const auto& [rel, e] : *record) {
        check.damage.push_back({shownPath(rel), "missing (" + typeName(e.mode) + ")"});
      }
      std::stable_sort(check.damage.begin(), check.damage.end(),
                       [](const Damage& a, const Damage& b) { return a.path < b.path; });
    }
  }
  // Removed (moved into gc/ and deleted) while it was read: what the walk
  // saw is no damage.
  struct stat after {};
  if (::stat(rootfs.c_str(), &after) != 0 || after.st_ino != before.st_ino || after.st_dev != before.st_dev) {
    check = ContentCheck{};
    check.rootfs = rootfs;
    check.gone = true;
  }
  return check;
}

}  // namespace prov::store
