#include "store/aci.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <memory>

#include "fetcher/appc.hpp"
#include "fetcher/digest.hpp"
#include "store/layer_record.hpp"
#include "store/paths.hpp"

namespace prov::store {

namespace {

// The archive's bytes after decompression (libarchive's raw format behind
// every filter it has), hashed on the way to the tar reader.
class AciSource final : public TarSource {
 public:
  AciSource(archive* a, fetcher::Hasher hasher, std::uint64_t limit, std::string what, const std::atomic<bool>* cancel)
      : archive_(a), hasher_(std::move(hasher)), limit_(limit), what_(std::move(what)), cancel_(cancel),
        buffer_(256 * 1024) {}

  Try<std::string_view> read() override {
    if (done_) return std::string_view();
    if (cancel_ && cancel_->load()) return Error(ErrorKind::Cancelled, "Stopped reading " + what_ + ": cancelled");
    const la_ssize_t n = archive_read_data(archive_, buffer_.data(), buffer_.size());
    if (n < 0) {
      const char* why = archive_error_string(archive_);
      return Error(ErrorKind::Corruption,
                   "Failed to read " + what_ + ": it does not decompress (" + (why ? why : "unknown error") + ")");
    }
    if (n == 0) {
      done_ = true;
      return std::string_view();
    }
    total_ += static_cast<std::uint64_t>(n);
    if (total_ > limit_) {
      return Error(ErrorKind::ResourceExhausted, "Failed to read " + what_ + ": it is over " + std::to_string(limit_) +
                                                     " bytes uncompressed (the layer size limit, --max_layer_bytes)");
    }
    hasher_.update(buffer_.data(), static_cast<std::size_t>(n));
    return std::string_view(buffer_.data(), static_cast<std::size_t>(n));
  }

  std::string id() { return "sha512-" + hasher_.finish().substr(std::string_view("sha512:").size()); }

 private:
  archive* archive_;
  fetcher::Hasher hasher_;
  std::uint64_t limit_;
  std::string what_;
  const std::atomic<bool>* cancel_;
  std::vector<char> buffer_;
  std::uint64_t total_ = 0;
  bool done_ = false;
};

}  // namespace

Try<AciContents> extractAci(const std::string& path, const std::string& root, const std::string& what,
                            const ExtractLimits& limits, const std::atomic<bool>* cancel) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), &archive_read_free);
  // Only what an ACI may be compressed with (filter_all would also run
  // external programs for lrzip, grzip, ...).
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_bzip2(a.get());
  archive_read_support_filter_xz(a.get());
  archive_read_support_filter_zstd(a.get());
  archive_read_support_format_raw(a.get());
  archive_entry* entry = nullptr;
  if (archive_read_open_filename(a.get(), path.c_str(), 256 * 1024) != ARCHIVE_OK ||
      archive_read_next_header(a.get(), &entry) != ARCHIVE_OK) {
    const char* why = archive_error_string(a.get());
    return Error(ErrorKind::Corruption,
                 "Failed to read " + what + ": it does not decompress (" + (why ? why : "it is empty") + ")");
  }
  auto hasher = fetcher::Hasher::create("sha512");
  if (hasher.isError()) return hasher.error();
  AciSource source(a.get(), std::move(*hasher), limits.maxLayerBytes, what, cancel);

  ApplyOptions options;
  options.what = what;
  options.bottomLayer = true;
  options.limits = limits;
  options.subtree = "rootfs";
  options.capture = {"manifest"};
  options.captureLimit = 1 << 20;
  options.whiteouts = false;
  auto applied = applyTar(root, source, options);
  if (applied.isError()) return applied.error();
  auto recorded = writeRecord(paths::recordOf(root), applied->record, false);
  if (recorded.isError()) return recorded.error();
  auto manifest = applied->captured.find("manifest");
  if (manifest == applied->captured.end()) {
    return Error(ErrorKind::InvalidArgument, "Invalid " + what + ": it has no 'manifest'");
  }
  if (!applied->sawSubtree) return Error(ErrorKind::InvalidArgument, "Invalid " + what + ": it has no 'rootfs/'");
  auto parsed = fetcher::parseAppcManifest(manifest->second, "Invalid manifest in " + what);
  if (parsed.isError()) return parsed.error();
  return AciContents{source.id(), std::move(manifest->second), std::move(*parsed), applied->entries,
                     std::move(applied->impliedDirs)};
}

}  // namespace prov::store
