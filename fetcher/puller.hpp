#pragma once

// Pullers: where an image's manifest, config and layer bytes come from.
//
// `Puller` is the narrow role the image store uses: resolve an image to its
// platform manifest and config, then stream each layer blob into a sink.
// `RegistryPuller` does it over the registry protocol (registry.hpp); the
// local sources (docker-archive, OCI layout) implement the same role.

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "actors/future.hpp"
#include "actors/process_owner.hpp"
#include "fetcher/registry.hpp"
#include "messages/image.pb.h"

namespace prov::actors {
class Runtime;
}

namespace prov::fetcher {

// Where one transfer of a blob may take its bytes from. A puller may know
// several sources for a blob (a registry's mirrors, then the registry). It
// moves on to the next only while no byte of the blob reached the sink:
// once one has, a failure ends the transfer, since two sources spliced into
// one stream could put a mirror's own entries into a layer wherever the
// stream is not hashed whole. The caller may then start over from nothing
// (a fresh sink, fresh hashes) at restartAt(). Thread-safe.
class BlobSources {
 public:
  explicit BlobSources(std::size_t first = 0) : first_(first) {}
  std::size_t first() const { return first_; }

  // By the puller: how many sources it knows, and that source `i` sent
  // bytes on to the sink.
  void known(std::size_t count) {
    std::lock_guard lock(mutex_);
    count_ = count;
  }
  void delivered(std::size_t i) {
    std::lock_guard lock(mutex_);
    delivered_ = i;
  }

  // The source a fresh transfer should start at: the one after the last
  // that sent bytes, if there is one.
  std::optional<std::size_t> restartAt() const {
    std::lock_guard lock(mutex_);
    if (!delivered_ || *delivered_ + 1 >= count_) return std::nullopt;
    return *delivered_ + 1;
  }

 private:
  const std::size_t first_;
  mutable std::mutex mutex_;
  std::size_t count_ = 1;
  std::optional<std::size_t> delivered_;
};

class Puller {
 public:
  virtual ~Puller() = default;
  virtual actors::Future<messages::ResolvedImage> resolve(const messages::Image& image,
                                                          const messages::Platform& platform) = 0;
  // As resolve, and `manifestSeen` gets each platform manifest the resolve
  // reads (reference, digests, endpoint and manifest, no config yet) before
  // it fetches that manifest's config, on any thread: so a caller can start
  // on the layers while the config is on its way. The result may come from
  // another manifest than the one seen first (a mirror that failed after
  // its manifest). By default: resolve, with no call.
  using ManifestSeen = std::function<void(const messages::ResolvedImage&)>;
  virtual actors::Future<messages::ResolvedImage> resolveNotifying(const messages::Image& image,
                                                                   const messages::Platform& platform,
                                                                   ManifestSeen manifestSeen) {
    (void)manifestSeen;
    return resolve(image, platform);
  }
  // Whether a new connection to `resolved`'s endpoint needs no TLS
  // handshake: then a blob fetched beside the config takes no more round
  // trips than one fetched after it, on the config's connection. By
  // default: no.
  virtual bool connectsPlain(const messages::ResolvedImage& resolved) {
    (void)resolved;
    return false;
  }
  // READY once every byte of `blob` went to `sink` and its digest and size
  // matched; on failure, what the sink got is garbage. `sources` says where
  // to start and records where bytes came from (see BlobSources).
  virtual actors::Future<Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                            const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink,
                                            std::shared_ptr<BlobSources> sources) = 0;
  // Whether `image`'s credentials (or none) can still read `manifestDigest`
  // of `image`'s repository: for a store that serves an image pulled with
  // another request's credentials. Unauthorized when they cannot. Local
  // sources have nothing to check. NotFound when the manifest is gone.
  virtual actors::Future<Nothing> checkAccess(const messages::Image& image, const std::string& manifestDigest) {
    (void)image;
    (void)manifestDigest;
    return Nothing{};
  }

  // From the first source.
  actors::Future<Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                    const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink) {
    return fetchBlob(image, resolved, blob, std::move(sink), std::make_shared<BlobSources>());
  }
};

class RegistryPullerProcess;

// An actor: at most `maxConcurrentBlobs` blob downloads in flight from one
// registry endpoint (the one a transfer starts at; others queue, by the
// image's priority, then first come first served), and one more for a
// download more urgent than all that run; a blob's sources are the endpoint its
// image was resolved at, then the reference's other endpoints. Discarding a
// queued fetch drops it; discarding one in flight closes its connection.
class RegistryPuller final : public Puller {
 public:
  static Try<std::unique_ptr<RegistryPuller>> create(actors::Runtime& runtime, RegistryOptions options,
                                                     std::size_t maxConcurrentBlobs = 4);
  ~RegistryPuller() override;

  actors::Future<messages::ResolvedImage> resolve(const messages::Image& image,
                                                  const messages::Platform& platform) override;
  actors::Future<messages::ResolvedImage> resolveNotifying(const messages::Image& image,
                                                           const messages::Platform& platform,
                                                           ManifestSeen manifestSeen) override;
  bool connectsPlain(const messages::ResolvedImage& resolved) override;
  using Puller::fetchBlob;
  actors::Future<Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                    const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink,
                                    std::shared_ptr<BlobSources> sources) override;

  // A GET of the manifest by digest with the image's credentials, at each
  // of its endpoints until one answers.
  actors::Future<Nothing> checkAccess(const messages::Image& image, const std::string& manifestDigest) override;

  RegistryClient& client();

 private:
  RegistryPuller(std::shared_ptr<RegistryClient> client, std::unique_ptr<RegistryPullerProcess> process,
                 actors::Runtime& runtime);
  std::shared_ptr<RegistryClient> client_;
  actors::ProcessOwner<RegistryPullerProcess> process_;
};

}  // namespace prov::fetcher
