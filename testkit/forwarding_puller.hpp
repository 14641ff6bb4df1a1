#pragma once

// A Puller that hands every call to another, for the tests' and drivers'
// pullers that watch or change one call and leave the rest as the real
// puller does them (the manifest reported before the config included).

#include <memory>
#include <utility>

#include "fetcher/puller.hpp"

namespace prov::testing {

class ForwardingPuller : public fetcher::Puller {
 public:
  explicit ForwardingPuller(std::shared_ptr<fetcher::Puller> inner) : inner_(std::move(inner)) {}

  actors::Future<messages::ResolvedImage> resolve(const messages::Image& image,
                                                  const messages::Platform& platform) override {
    return inner_->resolve(image, platform);
  }
  actors::Future<messages::ResolvedImage> resolveNotifying(const messages::Image& image,
                                                           const messages::Platform& platform,
                                                           ManifestSeen manifestSeen) override {
    return inner_->resolveNotifying(image, platform, std::move(manifestSeen));
  }
  bool connectsPlain(const messages::ResolvedImage& resolved) override { return inner_->connectsPlain(resolved); }
  using Puller::fetchBlob;
  actors::Future<actors::Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                            const messages::Descriptor& blob, std::shared_ptr<fetcher::ByteSink> sink,
                                            std::shared_ptr<fetcher::BlobSources> sources) override {
    return inner_->fetchBlob(image, resolved, blob, std::move(sink), std::move(sources));
  }
  actors::Future<actors::Nothing> checkAccess(const messages::Image& image,
                                              const std::string& manifestDigest) override {
    return inner_->checkAccess(image, manifestDigest);
  }

 private:
  std::shared_ptr<fetcher::Puller> inner_;
};

}  // namespace prov::testing
