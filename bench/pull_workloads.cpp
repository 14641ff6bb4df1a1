#include "bench/pull_workloads.hpp"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "bench/pull_process.hpp"

namespace prov::bench::pull {

namespace fs = std::filesystem;

namespace {

// Bump when a recipe changes: cached images of another version are rebuilt.
constexpr int kRecipeVersion = 2;

constexpr int kSmallDirs = 100;
constexpr int kSmallFilesPerDir = 1000;
constexpr std::uint64_t kBigFileBytes = 1ULL << 30;

std::string megabytes(std::uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return text;
}

// image.txt: the manifest digest, then one line per layer. Written last, so
// its presence marks a complete image.
void saveImage(const fs::path& file, const BuiltWorkload& image) {
  std::ofstream out(file);
  out << image.manifestDigest << "\n";
  for (const auto& l : image.layers) {
    const auto& s = l.stats;
    out << l.digest << ' ' << l.diffId << ' ' << l.size << ' ' << l.tarBytes << ' ' << s.entries << ' ' << s.files
        << ' ' << s.directories << ' ' << s.symlinks << ' ' << s.hardlinks << ' ' << s.whiteouts << ' ' << s.fileBytes
        << "\n";
  }
  if (!out.flush()) throw std::runtime_error("Failed to write '" + file.string() + "'");
}

bool loadImage(const fs::path& file, BuiltWorkload& image) {
  std::ifstream in(file);
  if (!(in >> image.manifestDigest)) return false;
  LayerBlob l;
  auto& s = l.stats;
  while (in >> l.digest >> l.diffId >> l.size >> l.tarBytes >> s.entries >> s.files >> s.directories >> s.symlinks >>
         s.hardlinks >> s.whiteouts >> s.fileBytes) {
    image.layers.push_back(l);
  }
  return !image.layers.empty();
}

}  // namespace

const std::vector<Workload>& allWorkloads() {
  static const std::vector<Workload> all = {
      {"medium", "medium"}, {"many-small", "many_small"}, {"big-file", "big_file"}};
  return all;
}

LayerStats BuiltWorkload::total() const {
  LayerStats t;
  for (const auto& l : layers) t.add(l.stats);
  return t;
}

std::uint64_t BuiltWorkload::gzipBytes() const {
  std::uint64_t n = 0;
  for (const auto& l : layers) n += l.size;
  return n;
}

std::uint64_t BuiltWorkload::tarBytes() const {
  std::uint64_t n = 0;
  for (const auto& l : layers) n += l.tarBytes;
  return n;
}

std::string BuiltWorkload::describe() const {
  const LayerStats t = total();
  std::ostringstream s;
  s << layers.size() << (layers.size() == 1 ? " layer, " : " layers, ") << megabytes(gzipBytes()) << " gzip, "
    << megabytes(tarBytes()) << " tar, " << megabytes(t.fileBytes) << " in files; " << t.entries
    << " entries: " << t.files << " files, " << t.directories << " dirs, " << t.symlinks << " symlinks, " << t.hardlinks
    << " hardlinks, " << t.whiteouts << " whiteouts";
  return s.str();
}

BuiltWorkload prepareWorkload(const Workload& workload, const fs::path& cacheDir) {
  const fs::path dir = cacheDir / (workload.name + "-v" + std::to_string(kRecipeVersion));
  BuiltWorkload image{workload, dir / "layout", {}, {}};
  if (loadImage(dir / "image.txt", image) && fs::exists(image.layout / "index.json")) return image;

  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(cacheDir, ec)) {  // other versions of this one
    const std::string name = entry.path().filename().string();
    if (name.rfind(workload.name + "-v", 0) == 0 && entry.path() != dir) fs::remove_all(entry.path());
  }
  std::printf("bench_pull: building %s in %s (once; cached for later runs)\n", workload.name.c_str(), dir.c_str());
  std::fflush(stdout);
  const auto start = std::chrono::steady_clock::now();
  fs::remove_all(dir);
  const fs::path blobs = image.layout / "blobs" / "sha256";
  fs::create_directories(blobs);
  if (workload.name == "medium") image.layers = buildMedium(blobs);
  if (workload.name == "many-small") image.layers = buildManySmall(blobs);
  if (workload.name == "big-file") image.layers = buildBigFile(blobs);
  image.manifestDigest = writeImage(image.layout, image.layers, "latest");
  saveImage(dir / "image.txt", image);
  std::printf("bench_pull: built %s in %.1f s\n", workload.name.c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return image;
}

std::vector<LayerBlob> buildManySmall(const fs::path& blobs) {
  LayerWriter layer(blobs);
  Prng prng(0x6d616e79ULL);
  char name[32];
  layer.addDirectory("many");
  for (int d = 0; d < kSmallDirs; ++d) {
    checkInterrupted();
    std::snprintf(name, sizeof name, "many/d%03d", d);
    const std::string dir = name;
    layer.addDirectory(dir);
    for (int f = 0; f < kSmallFilesPerDir; ++f) {
      std::snprintf(name, sizeof name, "/f%05d.txt", d * kSmallFilesPerDir + f);
      layer.addFileFrom(dir + name, 100 + prng.below(1901), [&](char* data, std::size_t n) { prng.fillText(data, n); });
    }
  }
  return {layer.finish()};
}

std::vector<LayerBlob> buildBigFile(const fs::path& blobs) {
  LayerWriter layer(blobs);
  Prng prng(0x626967ULL);
  layer.addDirectory("data");
  layer.addFileFrom("data/big.bin", kBigFileBytes, [&](char* data, std::size_t n) {
    checkInterrupted();
    prng.fill(data, n);
  });
  return {layer.finish()};
}

}  // namespace prov::bench::pull
