#pragma once

// Pullers: where an image's manifest, config and layer bytes come from.
//
// `Puller` is the narrow role the image store uses: resolve an image to its
// platform manifest and config, then stream each layer blob into a sink.
// `RegistryPuller` does it over the registry protocol (registry.hpp); the
// local sources (docker-archive, OCI layout) implement the same role.

#include <cstddef>
#include <memory>

#include "actors/future.hpp"
#include "actors/process_owner.hpp"
#include "fetcher/registry.hpp"
#include "messages/image.pb.h"

namespace prov::actors {
class Runtime;
}

namespace prov::fetcher {

class Puller {
 public:
  virtual ~Puller() = default;
  virtual actors::Future<messages::ResolvedImage> resolve(const messages::Image& image,
                                                          const messages::Platform& platform) = 0;
  // READY once every byte of `blob` went to `sink` and its digest and size
  // matched; on failure, what the sink got is garbage.
  virtual actors::Future<Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                            const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink) = 0;
};

class RegistryPullerProcess;

// An actor: at most `maxConcurrentBlobs` blob downloads in flight (others
// queue, first come first served); a blob is fetched from the endpoint its
// image was resolved at, then the reference's other endpoints. Discarding a
// queued fetch drops it; discarding one in flight closes its connection.
class RegistryPuller final : public Puller {
 public:
  static Try<std::unique_ptr<RegistryPuller>> create(actors::Runtime& runtime, RegistryOptions options,
                                                     std::size_t maxConcurrentBlobs = 4);
  ~RegistryPuller() override;

  actors::Future<messages::ResolvedImage> resolve(const messages::Image& image,
                                                  const messages::Platform& platform) override;
  actors::Future<Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                    const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink) override;

  RegistryClient& client();

 private:
  RegistryPuller(std::shared_ptr<RegistryClient> client, std::unique_ptr<RegistryPullerProcess> process,
                 actors::Runtime& runtime);
  std::shared_ptr<RegistryClient> client_;
  actors::ProcessOwner<RegistryPullerProcess> process_;
};

}  // namespace prov::fetcher
