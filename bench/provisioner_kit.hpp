#pragma once

// What the drivers that run an embedded Provisioner share: a puller that
// counts layer blob downloads, and a Provisioner on a fresh work dir.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "backend/backend.hpp"
#include "fetcher/puller.hpp"
#include "provisioner/provisioner.hpp"
#include "store/extractor.hpp"
#include "store/image_store.hpp"
#include "store/trust.hpp"
#include "testkit/forwarding_puller.hpp"

namespace prov::bench {

// Counts layer blob downloads.
class CountingPuller final : public testing::ForwardingPuller {
 public:
  using ForwardingPuller::ForwardingPuller;
  using Puller::fetchBlob;
  actors::Future<actors::Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                            const messages::Descriptor& blob, std::shared_ptr<fetcher::ByteSink> sink,
                                            std::shared_ptr<fetcher::BlobSources> sources) override {
    ++fetched_;
    return ForwardingPuller::fetchBlob(image, resolved, blob, std::move(sink), std::move(sources));
  }
  std::size_t fetched() const { return fetched_.load(); }
  void reset() { fetched_ = 0; }

 private:
  std::atomic<std::size_t> fetched_{0};
};

// What makeProvisioner may add.
struct ProvisionerExtras {
  std::shared_ptr<store::Extractor> extractor = {};  // null: the store's own
  std::shared_ptr<store::Trust> trust = {};          // null: no signature policy
  bool fresh = true;                                 // remove `workDir` first
  bool overlayView = true;                           // BackendOptions::overlayViewRoot = workDir
};

// A recovered Provisioner on `workDir`, its docker store pulling through
// `puller`, with every backend this machine runs; null after a line on
// stderr when it cannot be made.
inline std::unique_ptr<provisioner::Provisioner> makeProvisioner(actors::Runtime& runtime,
                                                                 const std::filesystem::path& workDir,
                                                                 std::shared_ptr<fetcher::Puller> puller,
                                                                 ProvisionerExtras extras = {}) {
  if (extras.fresh) std::filesystem::remove_all(workDir);
  provisioner::Provisioner::Parts parts;
  parts.workDir = workDir.string();
  store::ImageStoreOptions options;
  options.storeDir = (workDir / "store/docker").string();
  options.extractor = std::move(extras.extractor);
  options.trust = std::move(extras.trust);
  auto store = store::ImageStore::create(runtime, options, [puller](const messages::Image&) { return puller; });
  if (store.isError()) {
    std::fprintf(stderr, "error: %s\n", store.error().message.c_str());
    return nullptr;
  }
  parts.stores[store::kDockerProvider] = std::move(*store);
  parts.backends = backend::createBackends(runtime,
                                           {.overlayViewRoot = extras.overlayView ? workDir.string() : std::string()});
  parts.defaultBackend = backend::defaultBackend(workDir.string());
  auto created = provisioner::Provisioner::create(std::move(parts), runtime);
  if (created.isError()) {
    std::fprintf(stderr, "error: %s\n", created.error().message.c_str());
    return nullptr;
  }
  auto recovered = (*created)->recover({});
  recovered.waitFor(std::chrono::minutes(5));
  return std::move(*created);
}

}  // namespace prov::bench
