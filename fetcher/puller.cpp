#include "fetcher/puller.hpp"

#include <atomic>
#include <map>

#include "actors/defer.hpp"
#include "actors/dispatch.hpp"
#include "actors/process.hpp"
#include "actors/slots.hpp"
#include "fetcher/reference.hpp"
#include "fetcher/url.hpp"

namespace prov::fetcher {

using actors::Future;
using actors::Promise;

class RegistryPullerProcess : public actors::Process<RegistryPullerProcess> {
 public:
  RegistryPullerProcess(std::shared_ptr<RegistryClient> client, std::size_t limit)
      : actors::Process<RegistryPullerProcess>("registry-puller"), client_(std::move(client)),
        limit_(std::max<std::size_t>(1, limit)) {}

  Future<messages::ResolvedImage> resolve(const messages::Image& image, const messages::Platform& platform,
                                          const Puller::ManifestSeen& manifestSeen) {
    return client_->resolve(normalize(image.reference()), platform, credentialsOf(image), manifestSeen);
  }

  Future<Nothing> checkAccess(const messages::Image& image, const std::string& manifestDigest) {
    const std::string what = "Failed to serve '" + toString(normalize(image.reference())) +
                             "' from the store: it was pulled with credentials, and this request's cannot read it";
    auto repositories = client_->repositories(normalize(image.reference()), credentialsOf(image));
    if (repositories.isError()) return repositories.error();
    if (repositories->empty()) return Error(ErrorKind::Unauthorized, what);
    return checkAt(client_, *repositories, 0, manifestDigest, what);
  }

  Future<Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                            const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink,
                            std::shared_ptr<BlobSources> sources) {
    auto repositories = client_->repositories(normalize(image.reference()), credentialsOf(image));
    if (repositories.isError()) return repositories.error();
    // The endpoint the image came from first.
    std::stable_partition(repositories->begin(), repositories->end(),
                          [&](const Repository& r) { return r.endpoint.toString() == resolved.endpoint(); });
    if (!sources) sources = std::make_shared<BlobSources>();
    sources->known(repositories->size());
    const std::size_t first = sources->first();
    if (first >= repositories->size()) {
      return Error(ErrorKind::InvalidArgument, "Failed to fetch the blob '" + blob.digest() + "': source " +
                                                   std::to_string(first) + " of " +
                                                   std::to_string(repositories->size()) + " asked for");
    }
    Transfer transfer{std::move(*repositories), blob, std::move(sink), std::move(sources)};
    return slotsOf(transfer.repositories[first].endpoint.toString())
        .run<Nothing>([this, transfer, first] { return fetchFrom(client_, transfer, first); }, image.priority());
  }

 private:
  struct Transfer {
    std::vector<Repository> repositories;
    messages::Descriptor blob;
    std::shared_ptr<ByteSink> sink;
    std::shared_ptr<BlobSources> sources;
  };

  // Passes bytes on, noting that source `i` delivered some.
  class NotingSink final : public ByteSink {
   public:
    NotingSink(std::shared_ptr<ByteSink> out, std::shared_ptr<BlobSources> sources, std::size_t i)
        : out_(std::move(out)), sources_(std::move(sources)), i_(i) {}
    Future<Nothing> write(std::string_view chunk) override {
      if (!delivered_.exchange(true)) sources_->delivered(i_);
      return out_->write(chunk);
    }
    bool delivered() const { return delivered_; }

   private:
    std::shared_ptr<ByteSink> out_;
    std::shared_ptr<BlobSources> sources_;
    std::size_t i_;
    std::atomic<bool> delivered_{false};
  };

  static Future<Nothing> checkAt(const std::shared_ptr<RegistryClient>& client,
                                 const std::vector<Repository>& repositories, std::size_t i, const std::string& digest,
                                 const std::string& what) {
    return client->fetchManifest(repositories[i], digest)
        .then([](const FetchedManifest&) { return Nothing{}; })
        .repair([client, repositories, i, digest, what](const Future<Nothing>& failed) -> Future<Nothing> {
          const ErrorKind kind = failed.failure().kind;
          if (kind == ErrorKind::Cancelled) return failed;
          if (i + 1 < repositories.size()) return checkAt(client, repositories, i + 1, digest, what);
          if (kind == ErrorKind::Unauthorized || kind == ErrorKind::Forbidden) {
            return Error(ErrorKind::Unauthorized, what + ": " + failed.failure().message);
          }
          return failed.failure().withContext(what);
        });
  }

  static std::optional<messages::Credentials> credentialsOf(const messages::Image& image) {
    if (!image.has_credentials() || image.credentials().username().empty()) return std::nullopt;
    return image.credentials();
  }

  static Future<Nothing> fetchFrom(const std::shared_ptr<RegistryClient>& client, const Transfer& transfer,
                                   std::size_t i) {
    auto noting = std::make_shared<NotingSink>(transfer.sink, transfer.sources, i);
    Future<Nothing> result = client->streamBlob(transfer.repositories[i], transfer.blob, noting);
    if (i + 1 == transfer.repositories.size()) return result;
    // Only a blob no byte of which reached the sink may move on to the next
    // endpoint (BlobSources): falling through is for errors before the body
    // (not found, refused, unreachable).
    return result.repair([client, transfer, i, noting](const Future<Nothing>& failed) -> Future<Nothing> {
      if (noting->delivered()) return failed;
      const ErrorKind kind = failed.failure().kind;
      if (kind == ErrorKind::DigestMismatch || kind == ErrorKind::Corruption || kind == ErrorKind::Cancelled) {
        return failed;
      }
      return fetchFrom(client, transfer, i + 1);
    });
  }

  // The bound on one registry's transfers (the endpoint a transfer starts
  // at): a slow registry does not hold back the others.
  actors::Slots& slotsOf(const std::string& endpoint) {
    auto& slots = slots_[endpoint];
    if (!slots) {
      slots = std::make_unique<actors::Slots>(limit_);
      // A layer the extractor let run as urgent is not held back here.
      slots->setExtra(1);
      slots->setPost([pid = self()](std::function<void()> f) { actors::defer(pid, std::move(f))(); });
    }
    return *slots;
  }

  std::shared_ptr<RegistryClient> client_;
  const std::size_t limit_;
  std::map<std::string, std::unique_ptr<actors::Slots>> slots_;  // blob transfers in flight, by endpoint
};

Try<std::unique_ptr<RegistryPuller>> RegistryPuller::create(actors::Runtime& runtime, RegistryOptions options,
                                                            std::size_t maxConcurrentBlobs) {
  auto client = RegistryClient::create(runtime, std::move(options));
  if (client.isError()) return client.error();
  auto process = std::make_unique<RegistryPullerProcess>(*client, maxConcurrentBlobs);
  return std::unique_ptr<RegistryPuller>(new RegistryPuller(*client, std::move(process), runtime));
}

RegistryPuller::RegistryPuller(std::shared_ptr<RegistryClient> client, std::unique_ptr<RegistryPullerProcess> process,
                               actors::Runtime& runtime)
    : client_(std::move(client)), process_(runtime, std::move(process)) {}

RegistryPuller::~RegistryPuller() = default;

RegistryClient& RegistryPuller::client() { return *client_; }

Future<messages::ResolvedImage> RegistryPuller::resolve(const messages::Image& image,
                                                        const messages::Platform& platform) {
  return process_.dispatch(&RegistryPullerProcess::resolve, image, platform, ManifestSeen());
}

Future<messages::ResolvedImage> RegistryPuller::resolveNotifying(const messages::Image& image,
                                                                 const messages::Platform& platform,
                                                                 ManifestSeen manifestSeen) {
  return process_.dispatch(&RegistryPullerProcess::resolve, image, platform, std::move(manifestSeen));
}

bool RegistryPuller::connectsPlain(const messages::ResolvedImage& resolved) {
  auto url = parseUrl(resolved.endpoint());
  return !url.isError() && client_->http().reachesPlain(*url);
}

Future<Nothing> RegistryPuller::checkAccess(const messages::Image& image, const std::string& manifestDigest) {
  return process_.dispatch(&RegistryPullerProcess::checkAccess, image, manifestDigest);
}

Future<Nothing> RegistryPuller::fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                          const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink,
                                          std::shared_ptr<BlobSources> sources) {
  return process_.dispatch(&RegistryPullerProcess::fetchBlob, image, resolved, blob, std::move(sink),
                           std::move(sources));
}

}  // namespace prov::fetcher
