#include "store/extractor.hpp"

#include <fcntl.h>

#include <atomic>
#include <chrono>
#include <optional>

#include "actors/async.hpp"
#include "actors/collect.hpp"
#include "actors/defer.hpp"
#include "actors/disk.hpp"
#include "actors/dispatch.hpp"
#include "actors/fs.hpp"
#include "actors/process.hpp"
#include "actors/runtime.hpp"
#include "actors/slots.hpp"
#include "fetcher/manifest.hpp"
#include "store/aci.hpp"
#include "store/layer_stream.hpp"
#include "store/paths.hpp"

namespace prov::store {

using actors::Future;
using actors::Promise;
using messages::ExtractRequest;
using messages::ExtractResult;
using SteadyClock = std::chrono::steady_clock;

messages::ExtractLimits toMessage(const ExtractLimits& limits) {
  messages::ExtractLimits m;
  m.set_max_layer_bytes(limits.maxLayerBytes);
  m.set_max_entries(limits.maxEntries);
  m.set_max_path_bytes(limits.maxPathBytes);
  m.set_max_xattr_bytes(limits.maxXattrBytes);
  return m;
}

// A limit left at 0 (unset) keeps its default.
ExtractLimits fromMessage(const messages::ExtractLimits& m) {
  ExtractLimits limits;
  if (m.max_layer_bytes() > 0) limits.maxLayerBytes = m.max_layer_bytes();
  if (m.max_entries() > 0) limits.maxEntries = m.max_entries();
  if (m.max_path_bytes() > 0) limits.maxPathBytes = m.max_path_bytes();
  if (m.max_xattr_bytes() > 0) limits.maxXattrBytes = m.max_xattr_bytes();
  return limits;
}

Future<Nothing> removeStaged(actors::Runtime& runtime, const ExtractResult& staged) {
  return actors::async(runtime, [dir = staged.staging_dir()] {
    (void)actors::fs::removeTree(dir);  // else the next recover removes it
    return Nothing{};
  });
}

namespace {

double msSince(SteadyClock::time_point start) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
}

Error discarded(const std::string& what) {
  return Error(ErrorKind::Cancelled, "Failed to extract " + what + ": the request was discarded");
}

// What a feed writes into: the layer's stream, with a byte count for the
// progress and the result. One write is in flight at a time.
class FeedSink final : public fetcher::ByteSink {
 public:
  FeedSink(std::shared_ptr<LayerStream> stream, ExtractProgressFn progress)
      : stream_(std::move(stream)), progress_(std::move(progress)) {}

  Future<Nothing> write(std::string_view chunk) override {
    const auto total = bytes_.fetch_add(static_cast<std::int64_t>(chunk.size())) +
                       static_cast<std::int64_t>(chunk.size());
    if (progress_) progress_({ExtractProgress::Phase::Bytes, total});
    return stream_->write(chunk);
  }
  std::int64_t bytes() const { return bytes_.load(); }

 private:
  const std::shared_ptr<LayerStream> stream_;
  const ExtractProgressFn progress_;
  std::atomic<std::int64_t> bytes_{0};
};

}  // namespace

class ExtractorProcess : public actors::Process<ExtractorProcess> {
 public:
  ExtractorProcess(actors::Runtime& runtime, ExtractorOptions options)
      : actors::Process<ExtractorProcess>("extractor"), runtime_(runtime), options_(options) {}

  void initialize() override {
    slots_.setPost([pid = self()](std::function<void()> f) { actors::defer(pid, std::move(f))(); });
    std::size_t slots = options_.slots > 0 ? options_.slots : std::max<std::size_t>(1, runtime_.blockingThreads() / 2);
    if (runtime_.blockingThreads() > 1) slots = std::min(slots, runtime_.blockingThreads() - 1);
    slots_.setCount(slots);
    // One more for an urgent request, where the pool has a thread for it
    // beside the puller's.
    const std::size_t spare = runtime_.blockingThreads() > slots + 1 ? runtime_.blockingThreads() - slots - 1 : 0;
    slots_.setExtra(std::min(options_.urgentSlots, spare));
  }

  Future<ExtractResult> extract(const ExtractRequest& request, const Feed& feed, const ExtractProgressFn& progress,
                                const std::shared_ptr<ByteBudget>& budget, actors::Slots::Priority priority) {
    if (request.staging_parent().empty()) {
      return Error(ErrorKind::InvalidArgument,
                   "Failed to extract " + request.what() + ": the request names no staging directory");
    }
    std::optional<Compression> compression;
    if (request.format() == ExtractRequest::LAYER) {
      auto known = fetcher::layerCompression(request.layer().media_type());
      if (known.isError()) {
        return Error(ErrorKind::Unsupported, "Failed to pull " + request.what() + ": " + known.error().message);
      }
      compression = *known;
    }
    const auto queued = SteadyClock::now();
    return slots_.run<ExtractResult>(
        [this, request, feed, progress, compression, queued, budget] {
          if (progress) progress({ExtractProgress::Phase::Admitted, 0});
          Started started{paths::randomChild(request.staging_parent()), msSince(queued), SteadyClock::now()};
          return compression ? runLayer(request, feed, progress, *compression, started, budget)
                             : runAci(request, feed, progress, started);
        },
        priority ? std::move(priority) : std::make_shared<const std::atomic<int>>(request.priority()));
  }

  void reconsider() { slots_.reconsider(); }

  Extractor::Load load() const { return {slots_.count(), slots_.extra(), slots_.inUse(), slots_.waiting()}; }

 private:
  struct Started {
    std::string dir;  // the staging directory
    double waitMs = 0;
    SteadyClock::time_point at;
  };

  ExtractResult resultOf(const Started& started, const std::string& what) const {
    ExtractResult result;
    result.set_what(what);
    result.set_staging_dir(started.dir);
    result.set_rootfs(paths::stagedRootfs(started.dir));
    result.set_wait_ms(started.waitMs);
    result.set_run_ms(msSince(started.at));
    return result;
  }

  // A layer streamed through a LayerStream into <dir>/rootfs.
  Future<ExtractResult> runLayer(const ExtractRequest& request, const Feed& feed, const ExtractProgressFn& progress,
                                 Compression compression, const Started& started,
                                 const std::shared_ptr<ByteBudget>& budget) {
    LayerStreamOptions options;
    options.budget = budget;
    options.compression = compression;
    options.expectedDiffId = request.expected_diff_id();
    // The puller verified the blob's digest: when the blob is the tar
    // itself, that is the diffID, and the bytes are not hashed twice.
    options.hashDiffId = !(compression == Compression::None && request.layer().digest() == request.expected_diff_id());
    options.apply.what = request.what();
    options.apply.bottomLayer = request.bottom_layer();
    options.apply.limits = fromMessage(request.limits());
    auto stream = LayerStream::start(runtime_, paths::stagedRootfs(started.dir), options);
    auto sink = std::make_shared<FeedSink>(stream, progress);
    const std::string what = request.what();
    Future<Fed> fed = feed(started.dir, sink);
    fed.onAny([stream, sink, progress, what](const Future<Fed>& f) {
      if (f.isReady()) {
        if (progress) progress({ExtractProgress::Phase::InputEnded, sink->bytes()});
        stream->end();
      } else {
        stream->abort(f.isFailed() ? f.failure() : discarded(what));
      }
    });
    auto promise = std::make_shared<Promise<ExtractResult>>();
    promise->future().onDiscard([fed, stream, what] {
      fed.discard();
      stream->abort(discarded(what));
    });
    Future<ExtractedLayer> extracted = stream->result();
    // The extraction ends first on a failure or a discard (the feed's end
    // aborts it): the staging goes then, without waiting for a feed that
    // may be slow to stop. A whole tree waits for the feed to end, which is
    // when the blob's digest was verified.
    extracted.onAny(actors::defer(self(), [this, started, fed, extracted, sink, promise, what] {
      if (!extracted.isReady() || promise->future().hasDiscard()) {
        fed.discard();
        removeThen(started.dir, promise,
                   extracted.isFailed() ? std::optional<Error>(extracted.failure()) : std::nullopt);
        return;
      }
      fed.onAny(actors::defer(self(), [this, started, fed, extracted, sink, promise, what] {
        if (fed.isReady() && !promise->future().hasDiscard()) {
          ExtractResult result = resultOf(started, fed->what.empty() ? what : fed->what);
          result.set_content_id(extracted->diffId);
          for (const auto& dir : extracted->applied.impliedDirs) result.add_implied_dirs(dir);
          result.set_entries(extracted->applied.entries);
          result.set_blob_bytes(static_cast<std::uint64_t>(sink->bytes()));
          promise->set(std::move(result));
          return;
        }
        // Whole, but the blob failed its check, or the request was
        // discarded meanwhile: the caller would never take the tree.
        removeThen(started.dir, promise, fed.isFailed() ? std::optional<Error>(fed.failure()) : std::nullopt);
      }));
    }));
    return promise->future();
  }

  // An ACI: the feed leaves the archive on disk; it is extracted from there
  // into <dir>/rootfs.
  Future<ExtractResult> runAci(const ExtractRequest& request, const Feed& feed, const ExtractProgressFn& progress,
                               const Started& started) {
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    const std::string rootfs = paths::stagedRootfs(started.dir);
    Future<Fed> fed = actors::async(runtime_, [rootfs] {
                        return actors::fs::makeDirectories(rootfs);
                      }).then(actors::defer(self(), [feed, dir = started.dir](const Nothing&) {
      return feed(dir, nullptr);
    }));
    Future<AciContents> extracted = fed.then([&runtime = runtime_, rootfs, progress, cancel, what = request.what(),
                                              limits = fromMessage(request.limits())](const Fed& archive) {
      if (progress) progress({ExtractProgress::Phase::InputEnded, 0});
      return actors::async(runtime, [archive, rootfs, cancel, limits, what] {
        auto contents = extractAci(archive.file, rootfs, archive.what.empty() ? what : archive.what, limits,
                                   cancel.get());
        if (archive.removeFile) actors::fs::disk().unlinkat(AT_FDCWD, archive.file.c_str(), 0);
        return contents;
      });
    });
    auto promise = std::make_shared<Promise<ExtractResult>>();
    promise->future().onDiscard([cancel, fed, extracted] {
      cancel->store(true);
      fed.discard();
      extracted.discard();
    });
    // `extracted` completes once its job has ended (a running one sees the
    // cancel flag), so the removal below never races with it.
    extracted.onAny(
        actors::defer(self(), [this, started, promise, fed, what = request.what()](const Future<AciContents>& done) {
          if (done.isReady() && !promise->future().hasDiscard()) {
            ExtractResult result = resultOf(started, fed->what.empty() ? what : fed->what);
            result.set_content_id(done->id);
            for (const auto& dir : done->impliedDirs) result.add_implied_dirs(dir);
            result.set_entries(done->entries);
            result.set_appc_manifest_json(done->manifestJson);
            *result.mutable_appc_manifest() = done->manifest;
            promise->set(std::move(result));
            return;
          }
          removeThen(started.dir, promise, done.isFailed() ? std::optional<Error>(done.failure()) : std::nullopt);
        }));
    return promise->future();
  }

  // The staging directory removed, then the request fails with `error`, or
  // is discarded (without one, or when its caller discarded it).
  void removeThen(const std::string& dir, const std::shared_ptr<Promise<ExtractResult>>& promise,
                  const std::optional<Error>& error) {
    actors::async(runtime_, [dir] {
      return actors::fs::removeTree(dir);
    }).onAny(actors::defer(self(), [promise, error](const Future<bool>&) {
      if (error && !promise->future().hasDiscard()) {
        promise->fail(*error);
      } else {
        promise->discard();
      }
    }));
  }

  actors::Runtime& runtime_;
  const ExtractorOptions options_;
  actors::Slots slots_;
};

Extractor::Extractor(actors::Runtime& runtime, ExtractorOptions options)
    : process_(runtime, std::make_unique<ExtractorProcess>(runtime, options)) {}

Extractor::~Extractor() = default;

Future<ExtractResult> Extractor::extract(const ExtractRequest& request, Feed feed, ExtractProgressFn progress,
                                         std::shared_ptr<ByteBudget> budget, actors::Slots::Priority priority) {
  return process_.dispatch(&ExtractorProcess::extract, request, std::move(feed), std::move(progress), std::move(budget),
                           std::move(priority));
}

void Extractor::reconsider() { process_.dispatch(&ExtractorProcess::reconsider); }

Future<Extractor::Load> Extractor::load() { return process_.dispatch(&ExtractorProcess::load); }

}  // namespace prov::store
