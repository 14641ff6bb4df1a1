#pragma once

// The images bench_pull pulls, built by the benchmark itself,
// deterministically, as OCI layouts with gzip layers (pigz -n -6):
//   medium      5 layers of real trees from this machine's /usr (sorted,
//               capped subsets, padded with generated text when /usr has
//               too little), ~400 MB unpacked, with file and directory
//               whiteouts, opaque directories, a modified file, hardlinks
//               and absolute, relative, dangling and directory symlinks;
//   many-small  one layer, 100,000 files of 100-2000 bytes in 100 dirs;
//   big-file    one layer, one 1 GiB file of pseudo-random bytes.
// Built images are cached under <dir>/images/<name>-v<version>/ (the
// version changes whenever a recipe does), so reruns skip building.

#include <filesystem>
#include <string>
#include <vector>

#include "bench/pull_layer.hpp"

namespace prov::bench::pull {

struct Workload {
  std::string name;  // on the command line and in the repository name
  std::string key;   // in the JSON
};

const std::vector<Workload>& allWorkloads();

struct BuiltWorkload {
  Workload workload;
  std::filesystem::path layout;  // OCI layout, tag "latest"
  std::string manifestDigest;
  std::vector<LayerBlob> layers;  // base first

  std::string repository() const { return "bench/" + workload.name; }
  LayerStats total() const;
  std::uint64_t gzipBytes() const;
  std::uint64_t tarBytes() const;
  std::string describe() const;  // "5 layers, 156.9 MB gzip, 476.5 MB tar, 24634 entries (...)"
};

// The cached image, or a freshly built one (printing what it does).
BuiltWorkload prepareWorkload(const Workload& workload, const std::filesystem::path& cacheDir);

// Each builder writes its layers into `blobs` (an OCI layout's blobs/sha256).
std::vector<LayerBlob> buildMedium(const std::filesystem::path& blobs);
std::vector<LayerBlob> buildManySmall(const std::filesystem::path& blobs);
std::vector<LayerBlob> buildBigFile(const std::filesystem::path& blobs);

}  // namespace prov::bench::pull
