// libFuzzer target: arbitrary bytes as a layer, through the decompressor
// (the first byte picks none, gzip or zstd) into applyTar, inside a
// temporary root. Any write outside the root aborts, as does a crash. Bit 3
// of the first byte applies it as an ACI does: only rootfs/, `manifest`
// captured, no whiteouts.
//
// Layout per process: /tmp/fuzz-extract-<pid>/{root/, outside/sentinel}.
// After each input the parent must hold exactly root and outside, and
// outside exactly the untouched sentinel.

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "actors/fs.hpp"
#include "store/decompress.hpp"
#include "store/tar_apply.hpp"

namespace {

namespace fs = std::filesystem;
using namespace prov::store;

class BytesSource final : public TarSource {
 public:
  BytesSource(std::string_view bytes, Decompressor& decompressor) : input_(bytes), decompressor_(decompressor) {}
  prov::actors::Try<std::string_view> read() override {
    if (ended_) return std::string_view();
    // Small pieces, so libarchive sees many reads.
    std::string_view piece = input_.substr(0, 997);
    const std::size_t before = piece.size();
    auto out = decompressor_.pull(piece);
    input_.remove_prefix(before - piece.size());
    if (out.isError()) return out.error();
    if (!out->empty()) return *out;
    if (!input_.empty()) return read();
    ended_ = true;
    auto end = decompressor_.end();
    if (end.isError()) return end.error();
    return std::string_view();
  }

 private:
  std::string_view input_;
  Decompressor& decompressor_;
  bool ended_ = false;
};

// Leaked on purpose: the exit handler that removes it runs after statics die.
const fs::path& base() {
  static const fs::path* dir = [] {
    auto* d = new fs::path(fs::temp_directory_path() / ("fuzz-extract-" + std::to_string(::getpid())));
    fs::create_directories(*d / "outside");
    std::ofstream(*d / "outside" / "sentinel") << "untouched";
    std::atexit([] { (void)prov::actors::fs::removeTree(base().string()); });
    return d;
  }();
  return *dir;
}

void checkNothingOutside() {
  std::size_t entries = 0;
  for (const auto& e : fs::directory_iterator(base())) {
    const auto name = e.path().filename();
    if (name != "root" && name != "outside") std::abort();
    ++entries;
  }
  if (entries != 2) std::abort();
  std::size_t outside = 0;
  for (const auto& e : fs::directory_iterator(base() / "outside")) {
    if (e.path().filename() != "sentinel" || e.is_symlink() || !e.is_regular_file()) std::abort();
    ++outside;
  }
  std::stringstream content;
  content << std::ifstream(base() / "outside" / "sentinel").rdbuf();
  if (outside != 1 || content.str() != "untouched") std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static const Compression kinds[] = {Compression::None, Compression::Gzip, Compression::Zstd};
  const Compression compression = kinds[data[0] % 3];
  const fs::path root = base() / "root";
  fs::create_directories(root);
  auto decompressor = Decompressor::create(compression, "layer 'fuzz'", 64ull << 20);
  if (decompressor.isError()) std::abort();
  // The image's limit below the layer's, so that both refuse inputs.
  (*decompressor)
      ->shareBudget(std::make_shared<ByteBudget>(
          16ull << 20, prov::actors::Error(prov::actors::ErrorKind::ResourceExhausted, "the image size limit")));
  BytesSource source(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1), **decompressor);
  ApplyOptions options;
  options.what = "layer 'fuzz'";
  options.bottomLayer = (data[0] & 4) != 0;
  if ((data[0] & 8) != 0) {
    options.subtree = "rootfs";
    options.capture = {"manifest"};
    options.captureLimit = 4096;
    options.whiteouts = false;
  }
  options.limits.maxEntries = 10000;
  options.limits.maxLayerBytes = 64ull << 20;
  (void)applyTar(root.string(), source, options);
  checkNothingOutside();
  if (prov::actors::fs::removeTree(root.string()).isError()) std::abort();
  return 0;
}
