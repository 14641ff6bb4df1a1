#include "fetcher/local/archive.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include "actors/disk.hpp"
#include "fetcher/digest.hpp"

namespace prov::fetcher::local {

namespace {

constexpr std::size_t kBlockBytes = 1u << 20;
constexpr std::size_t kHashChunk = 256u << 10;

std::string archiveError(struct archive* a) {
  const char* text = archive_error_string(a);
  return text != nullptr ? text : "unknown libarchive error";
}

// One pass over a tar file (maybe compressed), entry by entry.
class TarReader {
 public:
  static Try<std::unique_ptr<TarReader>> open(const std::string& path, const std::string& what) {
    const int fd = actors::fs::disk().openat(AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int errnum = errno;
      return actors::errnoError(errnum == ENOENT || errnum == ENOTDIR ? ErrorKind::NotFound : ErrorKind::IO,
                                what + ": '" + path + "'", errnum);
    }
    std::unique_ptr<TarReader> reader(new TarReader(fd, path, what));
    struct stat st;
    if (::fstat(fd, &st) != 0) return actors::errnoError(ErrorKind::IO, what + ": '" + path + "'", errno);
    if (!S_ISREG(st.st_mode)) return Error(ErrorKind::InvalidArgument, what + ": '" + path + "' is not a file");
    struct archive* a = reader->archive_;
    if (a == nullptr) return Error(ErrorKind::ResourceExhausted, what + ": out of memory");
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_fd(a, fd, kBlockBytes) != ARCHIVE_OK) {
      return Error(ErrorKind::Corruption, what + ": '" + path + "' is not a readable tar archive: " + archiveError(a));
    }
    return reader;
  }

  ~TarReader() {
    if (archive_ != nullptr) archive_read_free(archive_);
    ::close(fd_);
  }
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // The next entry with its normalised name ("" when unusable); nullopt at the end.
  Try<std::optional<std::pair<std::string, ArchiveEntry>>> next() {
    struct archive_entry* e = nullptr;
    const int r = archive_read_next_header(archive_, &e);
    if (r == ARCHIVE_EOF) return std::optional<std::pair<std::string, ArchiveEntry>>();
    if (r < ARCHIVE_WARN) return corrupt();
    ArchiveEntry entry;
    const char* hardlink = archive_entry_hardlink(e);
    const auto type = archive_entry_filetype(e);
    if (hardlink != nullptr) {
      entry.type = ArchiveEntry::Type::Hardlink;
      entry.link = hardlink;
    } else if (type == AE_IFREG) {
      entry.type = ArchiveEntry::Type::File;
    } else if (type == AE_IFDIR) {
      entry.type = ArchiveEntry::Type::Directory;
    } else if (type == AE_IFLNK) {
      entry.type = ArchiveEntry::Type::Symlink;
      const char* target = archive_entry_symlink(e);
      entry.link = target != nullptr ? target : "";
    }
    entry.size = archive_entry_size(e);
    const char* path = archive_entry_pathname(e);
    std::string name;
    if (path != nullptr) {
      if (auto normal = normalizeRelative(path); normal.isSome()) name = *normal;
    }
    return std::optional(std::pair(std::move(name), std::move(entry)));
  }

  // Up to `max` bytes of the current entry; empty at its end.
  Try<std::string_view> read(std::size_t max) {
    buffer_.resize(max);
    const la_ssize_t n = archive_read_data(archive_, buffer_.data(), max);
    if (n < 0) return corrupt();
    return std::string_view(buffer_.data(), static_cast<std::size_t>(n));
  }

  // Exactly `max` bytes or up to the entry's end.
  Try<std::string> readUpTo(std::size_t max) {
    std::string out;
    while (out.size() < max) {
      auto chunk = read(std::min(kHashChunk, max - out.size()));
      if (chunk.isError()) return chunk.error();
      if (chunk->empty()) break;
      out.append(*chunk);
    }
    return out;
  }

  Error corrupt() const {
    return Error(ErrorKind::Corruption,
                 what_ + ": '" + path_ + "' is not a readable tar archive: " + archiveError(archive_));
  }

  const std::string& path() const { return path_; }

 private:
  TarReader(int fd, std::string path, std::string what)
      : fd_(fd), path_(std::move(path)), what_(std::move(what)), archive_(archive_read_new()) {}

  int fd_;
  std::string path_;
  std::string what_;
  struct archive* archive_;
  std::string buffer_;
};

class EntrySource final : public ChunkSource {
 public:
  explicit EntrySource(std::unique_ptr<TarReader> reader) : reader_(std::move(reader)) {}
  Try<std::string_view> next(std::size_t max) override { return reader_->read(max); }

 private:
  std::unique_ptr<TarReader> reader_;
};

// Feeds the current entry of `outer` to a decompressing libarchive reader,
// hashing the raw bytes on the way.
struct Tee {
  TarReader* outer;
  Hasher* raw;
  std::optional<Error> error;
};

la_ssize_t teeRead(struct archive*, void* data, const void** out) {
  auto* tee = static_cast<Tee*>(data);
  auto chunk = tee->outer->read(kHashChunk);
  if (chunk.isError()) {
    tee->error = chunk.error();
    return -1;
  }
  tee->raw->update(*chunk);
  *out = chunk->data();
  return static_cast<la_ssize_t>(chunk->size());
}

// sha256 of the current entry, and of its decompressed bytes when asked.
Try<std::pair<std::string, std::string>> hashEntry(TarReader& reader, const std::string& name, bool decompress,
                                                   const std::string& what) {
  Hasher raw = std::move(*Hasher::create("sha256"));
  std::string diffId;
  if (decompress) {
    Hasher plain = std::move(*Hasher::create("sha256"));
    Tee tee{&reader, &raw, std::nullopt};
    struct archive* inner = archive_read_new();
    if (inner == nullptr) return Error(ErrorKind::ResourceExhausted, what + ": out of memory");
    archive_read_support_filter_gzip(inner);
    archive_read_support_filter_zstd(inner);
    archive_read_support_format_raw(inner);
    struct archive_entry* e = nullptr;
    std::string buffer(kHashChunk, '\0');
    la_ssize_t n = 0;
    bool ok = archive_read_open(inner, &tee, nullptr, teeRead, nullptr) == ARCHIVE_OK &&
              archive_read_next_header(inner, &e) >= ARCHIVE_WARN;
    while (ok && (n = archive_read_data(inner, buffer.data(), buffer.size())) > 0) plain.update(buffer.data(), n);
    ok = ok && n == 0;
    const std::string why = archiveError(inner);
    archive_read_free(inner);
    if (tee.error) return *tee.error;
    if (!ok) return Error(ErrorKind::Corruption, what + ": the layer '" + name + "' does not decompress: " + why);
    diffId = plain.finish();
  }
  for (;;) {  // the rest (all of it when not decompressing)
    auto chunk = reader.read(kHashChunk);
    if (chunk.isError()) return chunk.error();
    if (chunk->empty()) break;
    raw.update(*chunk);
  }
  return std::pair(raw.finish(), diffId);
}

}  // namespace

Try<ArchiveIndex> indexArchive(const std::string& path, const CaptureLimit& capture, std::size_t budget,
                               const std::string& what) {
  auto reader = TarReader::open(path, what);
  if (reader.isError()) return reader.error();
  ArchiveIndex index;
  std::size_t captured = 0;
  for (;;) {
    auto next = (*reader)->next();
    if (next.isError()) return next.error();
    if (!next->has_value()) break;
    auto& [name, entry] = **next;
    if (name.empty()) continue;
    if (index.entries.size() >= kMaxArchiveEntries && index.entries.count(name) == 0) {
      return Error(ErrorKind::ResourceExhausted, what + ": '" + path + "' has more than " +
                                                     std::to_string(kMaxArchiveEntries) +
                                                     " entries, more than any `docker save` archive");
    }
    if (auto it = index.entries.find(name); it != index.entries.end()) {
      if (it->second.type != ArchiveEntry::Type::Directory || entry.type != ArchiveEntry::Type::Directory) {
        return Error(ErrorKind::Corruption, what + ": the entry '" + name + "' appears twice in '" + path + "'");
      }
    }
    if (entry.type == ArchiveEntry::Type::File && entry.size >= 0) {
      const std::size_t limit = capture(name);
      const auto size = static_cast<std::size_t>(entry.size);
      if (limit > 0 && size > limit) {
        return Error(ErrorKind::ResourceExhausted, what + ": '" + name + "' in '" + path + "' is " +
                                                       std::to_string(size) + " bytes, over the limit of " +
                                                       std::to_string(limit));
      }
      if (limit > 0 && captured + size <= budget) {
        auto content = (*reader)->readUpTo(size);
        if (content.isError()) return content.error();
        captured += size;
        entry.magic = content->substr(0, 4);
        index.contents[name] = std::move(*content);
      } else if (size > 0) {
        auto magic = (*reader)->readUpTo(4);
        if (magic.isError()) return magic.error();
        entry.magic = std::move(*magic);
      }
    }
    index.entries[name] = std::move(entry);
  }
  return index;
}

Try<std::string> regularEntry(const ArchiveIndex& index, const std::string& name, const std::string& what) {
  std::string current = name;
  for (int hops = 0; hops < 16; ++hops) {
    auto it = index.entries.find(current);
    if (it == index.entries.end()) {
      return Error(ErrorKind::Corruption, what + ": the archive has no entry '" + current + "'" +
                                              (current == name ? "" : " (a link from '" + name + "' leads there)"));
    }
    const ArchiveEntry& entry = it->second;
    switch (entry.type) {
      case ArchiveEntry::Type::File: return current;
      case ArchiveEntry::Type::Symlink:
      case ArchiveEntry::Type::Hardlink: {
        auto target = resolveLink(current, entry.link, entry.type == ArchiveEntry::Type::Hardlink);
        if (target.isError()) return Error(ErrorKind::Corruption, what + ": " + target.error().message);
        current = *target;
        break;
      }
      default: return Error(ErrorKind::Corruption, what + ": the archive entry '" + current + "' is not a file");
    }
  }
  return Error(ErrorKind::Corruption, what + ": too many links from the archive entry '" + name + "'");
}

Try<Collected> collectEntries(const std::string& path, const std::set<std::string>& read, std::size_t limit,
                              const std::set<std::string>& hash, const std::set<std::string>& decompress,
                              const std::string& what) {
  auto reader = TarReader::open(path, what);
  if (reader.isError()) return reader.error();
  Collected out;
  std::set<std::string> missing = read;
  missing.insert(hash.begin(), hash.end());
  while (!missing.empty()) {
    auto next = (*reader)->next();
    if (next.isError()) return next.error();
    if (!next->has_value()) break;
    const auto& [name, entry] = **next;
    if (!missing.count(name) || entry.type != ArchiveEntry::Type::File) continue;
    missing.erase(name);
    if (read.count(name)) {
      if (entry.size > static_cast<std::int64_t>(limit)) {
        return Error(ErrorKind::ResourceExhausted, what + ": '" + name + "' is " + std::to_string(entry.size) +
                                                       " bytes, over the limit of " + std::to_string(limit));
      }
      auto content = (*reader)->readUpTo(limit);
      if (content.isError()) return content.error();
      out.digests[name] = sha256Digest(*content);
      out.contents[name] = std::move(*content);
      continue;
    }
    auto digests = hashEntry(**reader, name, decompress.count(name) > 0, what);
    if (digests.isError()) return digests.error();
    out.digests[name] = digests->first;
    if (!digests->second.empty()) out.diffIds[name] = digests->second;
  }
  if (!missing.empty()) {
    return Error(ErrorKind::Corruption, what + ": the archive has no file '" + *missing.begin() + "'");
  }
  return out;
}

Try<std::unique_ptr<ChunkSource>> openEntry(const std::string& path, const std::string& name, const std::string& what) {
  auto reader = TarReader::open(path, what);
  if (reader.isError()) return reader.error();
  for (;;) {
    auto next = (*reader)->next();
    if (next.isError()) return next.error();
    if (!next->has_value()) break;
    const auto& [entryName, entry] = **next;
    if (entryName != name) continue;
    if (entry.type != ArchiveEntry::Type::File) {
      return Error(ErrorKind::Corruption, what + ": the archive entry '" + name + "' is not a file");
    }
    return std::unique_ptr<ChunkSource>(std::make_unique<EntrySource>(std::move(*reader)));
  }
  return Error(ErrorKind::NotFound, what + ": '" + path + "' has no entry '" + name + "'");
}

}  // namespace prov::fetcher::local
