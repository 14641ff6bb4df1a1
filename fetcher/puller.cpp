#include "fetcher/puller.hpp"

#include <deque>

#include "actors/defer.hpp"
#include "actors/dispatch.hpp"
#include "actors/process.hpp"
#include "fetcher/reference.hpp"

namespace prov::fetcher {

using actors::Future;
using actors::Promise;

class RegistryPullerProcess : public actors::Process<RegistryPullerProcess> {
 public:
  RegistryPullerProcess(std::shared_ptr<RegistryClient> client, std::size_t limit)
      : actors::Process<RegistryPullerProcess>("registry-puller"), client_(std::move(client)),
        limit_(std::max<std::size_t>(1, limit)) {}

  Future<messages::ResolvedImage> resolve(const messages::Image& image, const messages::Platform& platform) {
    return client_->resolve(normalize(image.reference()), platform, credentialsOf(image));
  }

  Future<Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                            const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink) {
    auto repositories = client_->repositories(normalize(image.reference()), credentialsOf(image));
    if (repositories.isError()) return repositories.error();
    // The endpoint the image came from first.
    std::stable_partition(repositories->begin(), repositories->end(),
                          [&](const Repository& r) { return r.endpoint.toString() == resolved.endpoint(); });
    Queued queued{std::move(*repositories), blob, std::move(sink), std::make_shared<Promise<Nothing>>()};
    Future<Nothing> result = queued.promise->future();
    queue_.push_back(std::move(queued));
    pump();
    return result;
  }

 private:
  struct Queued {
    std::vector<Repository> repositories;
    messages::Descriptor blob;
    std::shared_ptr<ByteSink> sink;
    std::shared_ptr<Promise<Nothing>> promise;
  };

  static std::optional<messages::Credentials> credentialsOf(const messages::Image& image) {
    if (!image.has_credentials() || image.credentials().username().empty()) return std::nullopt;
    return image.credentials();
  }

  void pump() {
    while (inflight_ < limit_ && !queue_.empty()) {
      Queued next = std::move(queue_.front());
      queue_.pop_front();
      if (next.promise->future().hasDiscard()) {
        next.promise->discard();
        continue;
      }
      ++inflight_;
      Future<Nothing> transfer = fetchFrom(client_, next, 0);
      next.promise->future().onDiscard([transfer] { transfer.discard(); });
      next.promise->associate(transfer);
      transfer.onAny(actors::defer(self(), [this] {
        --inflight_;
        pump();
      }));
    }
  }

  static Future<Nothing> fetchFrom(const std::shared_ptr<RegistryClient>& client, const Queued& queued, std::size_t i) {
    Future<Nothing> result = client->streamBlob(queued.repositories[i], queued.blob, queued.sink);
    if (i + 1 == queued.repositories.size()) return result;
    // Only a blob no byte of which reached the sink may move on to the next
    // endpoint; our sinks cannot take a blob twice, so falling through is
    // for errors before the body (not found, refused, unreachable).
    return result.repair([client, queued, i](const Future<Nothing>& failed) -> Future<Nothing> {
      const ErrorKind kind = failed.failure().kind;
      if (kind == ErrorKind::DigestMismatch || kind == ErrorKind::Corruption || kind == ErrorKind::Cancelled) {
        return failed;
      }
      return fetchFrom(client, queued, i + 1);
    });
  }

  std::shared_ptr<RegistryClient> client_;
  std::size_t limit_;
  std::size_t inflight_ = 0;
  std::deque<Queued> queue_;
};

struct RegistryPuller::Pid {
  actors::PID<RegistryPullerProcess> pid;
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
    : client_(std::move(client)), process_(std::move(process)), pid_(std::make_unique<Pid>()) {
  pid_->pid = actors::spawn(runtime, *process_);
}

RegistryPuller::~RegistryPuller() {
  actors::terminate(pid_->pid);
  actors::wait(pid_->pid);
}

RegistryClient& RegistryPuller::client() { return *client_; }

Future<messages::ResolvedImage> RegistryPuller::resolve(const messages::Image& image,
                                                        const messages::Platform& platform) {
  return actors::dispatch(pid_->pid, &RegistryPullerProcess::resolve, image, platform);
}

Future<Nothing> RegistryPuller::fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                          const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink) {
  return actors::dispatch(pid_->pid, &RegistryPullerProcess::fetchBlob, image, resolved, blob, std::move(sink));
}

}  // namespace prov::fetcher
