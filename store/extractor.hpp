#pragma once

// The extractor: the actor every layer and ACI extraction goes through. The
// stores (image_store.hpp, appc_store.hpp) share one, so one bound covers
// the node. It owns the extraction slots (how many layers download and
// extract at once: a running extraction holds a blocking-pool thread while
// it waits for bytes), their order, the staging directories it makes, and
// the progress of each request.
//
//   ExtractRequest request;  // format, what, layer, expected_diff_id,
//                            // staging_parent, limits, bottom_layer, priority
//   extractor.extract(request, [=](const std::string&, std::shared_ptr<fetcher::ByteSink> sink) {
//     return puller->fetchBlob(image, resolved, blob, sink).then([] { return Fed{}; });
//   });
//
// extract(request, feed, progress) waits for a slot (higher `priority`
// first, first come first served among equals; `priority`, when given, is
// a shared value the caller may raise while the request waits, then call
// reconsider(); else request.priority), then makes
// staging_parent/<random> and calls feed(stagingDir, sink) on the
// extractor's strand. A request is admitted once, for its download and its
// extraction together; the slot is its until its result completes.
//   - LAYER: the feed writes the blob into `sink`, which decompresses
//     (layer.media_type says how), hashes (the diffID, checked against
//     expected_diff_id) and applies it as it arrives; a write completes when
//     the extraction used the chunk. The feed's future is READY once the
//     blob was complete and verified; FAILED stops the extraction with that
//     error. The bytes are not copied to disk on the way.
//   - ACI: `sink` is null. The feed puts the archive on disk (in the
//     staging directory or anywhere) and returns its path in Fed::file; the
//     extraction reads it, then deletes it when Fed::removeFile.
// The result is READY with the staging directory, which is the caller's
// from then on (to rename into the store, or remove), and what was found
// (messages/extract.proto). On failure or discard the staging directory is
// removed before the result completes: nothing partial is left. A discard
// of a request that waits for its slot drops it; of a running one, stops
// its feed and its extraction.
//
// Errors: InvalidArgument for a request without a staging parent, or an
// entry that escapes the root; Unsupported for a layer media type without a
// decompressor; the feed's error as it is; Corruption for bytes that do not
// decompress or are not a tar (or an ACI that breaks the AppC spec);
// DigestMismatch for a diffID that is not the expected one;
// ResourceExhausted past a limit; IO for the disk; Unavailable when the
// runtime shuts down mid-way. Each names the request's `what` (or Fed::what).
//
// Threads: every call may come from any thread. The result completes on
// the extractor's strand. `progress` (optional): Admitted on the
// extractor's strand; Bytes on the thread that writes into the sink;
// InputEnded on the thread that completed the feed. One request's events
// come in that order, never at once; it must be cheap and thread-safe.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "actors/future.hpp"
#include "actors/process_owner.hpp"
#include "actors/slots.hpp"
#include "fetcher/byte_sink.hpp"
#include "messages/extract.pb.h"
#include "store/decompress.hpp"
#include "store/tar_apply.hpp"

namespace prov::store {

// What a feed hands back (see above).
struct Fed {
  std::string file;         // ACI: the archive to read
  bool removeFile = false;  // ACI: delete `file` once read
  std::string what;         // when set, names the content in the extraction's errors
};
using Feed =
    std::function<actors::Future<Fed>(const std::string& stagingDir, const std::shared_ptr<fetcher::ByteSink>& sink)>;

struct ExtractProgress {
  enum class Phase { Admitted, Bytes, InputEnded };
  Phase phase = Phase::Admitted;
  std::int64_t bytes = 0;  // fed so far
};
using ExtractProgressFn = std::function<void(const ExtractProgress&)>;

struct ExtractorOptions {
  // Requests that run at once. 0: half the runtime's blocking threads; at
  // most all but one (the registry puller hashes there too), at least 1.
  std::size_t slots = 0;
  // Requests that may run beyond `slots`, each only while it is more urgent
  // than every request running (actors/slots.hpp): an urgent small image
  // does not wait for a large one's layers. Capped so that the slots and
  // these leave the puller one blocking thread.
  std::size_t urgentSlots = 1;
};

// The caller's next step on a staged tree: next(result) once `extracted` is
// READY. A discard that reached the caller's chain while the extractor was
// finishing (the request crosses actors, so it can) makes `then` skip
// `next`; the staged tree is nobody's then, and is removed instead.
actors::Future<Nothing> removeStaged(actors::Runtime& runtime, const messages::ExtractResult& staged);

template <typename F>
auto afterExtraction(actors::Runtime& runtime, const actors::Future<messages::ExtractResult>& extracted, F next) {
  auto taken = std::make_shared<std::atomic<bool>>(false);
  auto result = extracted.then([taken, next = std::move(next)](const messages::ExtractResult& staged) {
    taken->store(true);
    return next(staged);
  });
  // Registered after then's callback, so it runs after it.
  extracted.onReady([&runtime, taken](const messages::ExtractResult& staged) {
    if (!taken->load()) removeStaged(runtime, staged);
  });
  return result;
}

// Between the request's limits and the extraction's.
messages::ExtractLimits toMessage(const ExtractLimits& limits);
ExtractLimits fromMessage(const messages::ExtractLimits& limits);

class ExtractorProcess;

class Extractor {
 public:
  Extractor(actors::Runtime& runtime, ExtractorOptions options = {});
  ~Extractor();
  Extractor(const Extractor&) = delete;
  Extractor& operator=(const Extractor&) = delete;

  // `budget` (may be null): the image's unpacked bytes, which this layer
  // shares with the image's others (LayerStreamOptions::budget).
  actors::Future<messages::ExtractResult> extract(const messages::ExtractRequest& request, Feed feed,
                                                  ExtractProgressFn progress = {},
                                                  std::shared_ptr<ByteBudget> budget = nullptr,
                                                  actors::Slots::Priority priority = nullptr);
  // Grants the slots that raised priorities now allow.
  void reconsider();

  struct Load {
    std::size_t slots = 0;    // the bound
    std::size_t urgent = 0;   // extra slots for urgent requests
    std::size_t running = 0;  // requests holding a slot
    std::size_t waiting = 0;  // requests waiting for one
  };
  actors::Future<Load> load();

 private:
  actors::ProcessOwner<ExtractorProcess> process_;
};

}  // namespace prov::store
