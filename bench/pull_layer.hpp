#pragma once

// Streaming image building for bench_pull: layer tars written entry by entry
// with libarchive (pax) and compressed by `pigz -n -6` into an OCI layout's
// blobs, never held in memory; the image config, manifest and index.json;
// and the deterministic pseudo-random bytes and text the workloads are made
// of.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <sys/stat.h>
#include <sys/types.h>

#include "fetcher/digest.hpp"

struct archive;

namespace prov::bench::pull {

inline constexpr std::int64_t kMtime = 1700000000;  // of every generated entry

// xoshiro256** seeded through splitmix64: fast and the same everywhere.
class Prng {
 public:
  explicit Prng(std::uint64_t seed);
  std::uint64_t next();
  std::uint64_t below(std::uint64_t n) { return next() % n; }
  void fill(char* data, std::size_t size);      // random bytes
  void fillText(char* data, std::size_t size);  // lowercase words and newlines (compresses ~3x)

 private:
  std::uint64_t s_[4];
};

struct LayerStats {
  std::uint64_t entries = 0, files = 0, directories = 0, symlinks = 0, hardlinks = 0, whiteouts = 0;
  std::uint64_t fileBytes = 0;
  void add(const LayerStats& o);
};

struct LayerBlob {
  std::string digest;  // of the gzip blob
  std::string diffId;  // of the tar
  std::uint64_t size = 0, tarBytes = 0;
  LayerStats stats;
};

// One layer being written. Entry paths are relative ("usr/lib/x"); missing
// parent directories are added (0755) before an entry that needs them.
// Throws std::runtime_error on any failure; an unfinished layer is removed.
class LayerWriter {
 public:
  explicit LayerWriter(const std::filesystem::path& blobsDir);
  ~LayerWriter();
  LayerWriter(const LayerWriter&) = delete;
  LayerWriter& operator=(const LayerWriter&) = delete;

  void addDirectory(const std::string& path, unsigned mode = 0755, std::int64_t mtime = kMtime);
  void addFile(const std::string& path, std::string_view content, unsigned mode = 0644, std::int64_t mtime = kMtime);
  // A file of `size` bytes produced by calls fill(buffer, n).
  void addFileFrom(const std::string& path, std::uint64_t size, const std::function<void(char*, std::size_t)>& fill,
                   unsigned mode = 0644, std::int64_t mtime = kMtime);
  void addSymlink(const std::string& path, const std::string& target);
  void addHardlink(const std::string& path, const std::string& target);
  void addWhiteout(const std::string& path);     // "<dir>/.wh.<name>" for path "<dir>/<name>"
  void addOpaque(const std::string& directory);  // "<directory>/.wh..wh..opq"
  // Copies a host directory (the entry only), regular file or symlink with
  // its mode and mtime; other types are skipped. Returns false when skipped.
  bool addHostEntry(const std::filesystem::path& source, const std::string& path, const struct stat& st);

  bool hasDirectory(const std::string& path) const { return directories_.count(path) != 0; }
  const LayerStats& stats() const { return stats_; }

  // Ends the tar, waits for pigz, hashes the blob and moves it to its digest.
  LayerBlob finish();

 private:
  static long onWrite(struct archive* a, void* self, const void* data, std::size_t size);
  void ensureParents(const std::string& path);
  void abort();

  std::filesystem::path blobsDir_;
  std::filesystem::path temporary_;
  struct archive* archive_ = nullptr;
  int pipe_ = -1;
  pid_t pigz_ = -1;
  fetcher::Hasher diffId_;
  std::uint64_t tarBytes_ = 0;
  bool writeFailed_ = false;
  std::set<std::string> directories_;
  LayerStats stats_;
};

// Writes the image config (amd64/linux, rootfs.diff_ids), the manifest
// (gzip layers, OCI media types) and index.json tagging it `tag` into the
// OCI layout at `layout` (whose blobs already hold the layers). Returns the
// manifest digest.
std::string writeImage(const std::filesystem::path& layout, const std::vector<LayerBlob>& layers,
                       const std::string& tag);

}  // namespace prov::bench::pull
