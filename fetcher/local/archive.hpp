#pragma once

// Reading `docker save` archives with libarchive, without unpacking them:
// an index of the entries (with the content of the small metadata files and
// the first bytes of every file), a second pass that reads or hashes chosen
// entries, and one entry as a chunk source. All blocking: call them on the
// blocking pool. Entry names are normalised ("./a//b" -> "a/b"); an entry
// whose name is absolute or has ".." gets no name and cannot be referred to.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "fetcher/local/util.hpp"

namespace prov::fetcher::local {

struct ArchiveEntry {
  enum class Type { File, Directory, Symlink, Hardlink, Other };
  Type type = Type::Other;
  std::int64_t size = 0;
  std::string link;   // a symlink's or hardlink's target, as written
  std::string magic;  // the first (up to 4) bytes of a file
};

struct ArchiveIndex {
  std::map<std::string, ArchiveEntry> entries;
  std::map<std::string, std::string> contents;  // the files captured whole
};

// How many bytes of the file `name` to capture whole (0: none); a larger
// file is an error (ResourceExhausted).
using CaptureLimit = std::function<std::size_t(const std::string& name)>;

// How many entries an archive's index holds at most: a `docker save` has a
// few per layer, so this is thousands of layers.
inline constexpr std::size_t kMaxArchiveEntries = 10'000;

// Pass 1. Captures files while their total stays under `budget` bytes.
// NotFound when `path` does not exist; Corruption when it is not a tar or a
// non-directory name appears twice; ResourceExhausted past
// kMaxArchiveEntries entries.
Try<ArchiveIndex> indexArchive(const std::string& path, const CaptureLimit& capture, std::size_t budget,
                               const std::string& what);

// The regular file `name` leads to, through symbolic and hard links inside
// the archive. Corruption when it is missing, not a file, or a link leaves
// the archive or loops.
Try<std::string> regularEntry(const ArchiveIndex& index, const std::string& name, const std::string& what);

struct Collected {
  std::map<std::string, std::string> contents;  // name -> bytes
  std::map<std::string, std::string> digests;   // name -> sha256 of the bytes
  std::map<std::string, std::string> diffIds;   // name -> sha256 after gzip/zstd decompression
};

// Pass 2: reads `read` entries whole (each at most `limit` bytes), hashes
// `hash` entries, and for those also in `decompress` the decompressed bytes.
// Corruption when one of them is not in the archive.
Try<Collected> collectEntries(const std::string& path, const std::set<std::string>& read, std::size_t limit,
                              const std::set<std::string>& hash, const std::set<std::string>& decompress,
                              const std::string& what);

// The data of the regular file entry `name`.
Try<std::unique_ptr<ChunkSource>> openEntry(const std::string& path, const std::string& name, const std::string& what);

}  // namespace prov::fetcher::local
