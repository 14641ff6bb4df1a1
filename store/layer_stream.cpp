#include "store/layer_stream.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <utility>

#include "actors/async.hpp"
#include "actors/fs.hpp"
#include "actors/runtime.hpp"
#include "fetcher/digest.hpp"
#include "store/decompress.hpp"
#include "store/layer_record.hpp"
#include "store/paths.hpp"

namespace prov::store {

using actors::Future;
using actors::Promise;

Error diffIdMismatch(const std::string& what, const std::string& diffId, const std::string& expected) {
  return Error(ErrorKind::DigestMismatch, "Failed to verify " + what + ": its uncompressed tar is " + diffId +
                                              ", but the image config's diff_ids say " + expected);
}

namespace {

// The diffID's SHA-256 beside the extraction: the piece just inflated is
// hashed on a blocking-pool thread while the job writes it out and inflates
// the next one (the decompressor's two buffers take turns). One piece at a
// time, in order. A piece the pool has not started on when the job needs it
// hashed is hashed by the job itself: a busy pool (every thread an
// extraction) never makes a job wait for a thread it cannot get.
class HashBeside {
 public:
  HashBeside(actors::Runtime& runtime, fetcher::Hasher& hasher)
      : runtime_(runtime), hasher_(hasher), slot_(std::make_shared<Slot>()) {}
  HashBeside(const HashBeside&) = delete;
  HashBeside& operator=(const HashBeside&) = delete;
  ~HashBeside() { wait(); }

  // Hashes `piece` (which must stay readable until the next add() or wait()
  // returns), once the piece before it is hashed.
  void add(std::string_view piece) {
    wait();
    bool post = false;
    {
      std::lock_guard lock(slot_->mutex);
      slot_->piece = piece;
      slot_->state = State::Queued;
      // A task still queued takes this piece when it runs: at most one per
      // stream waits in the pool, however far behind the pool is.
      post = !std::exchange(slot_->posted, true);
    }
    if (!post) return;
    // Refused (the runtime is stopping): wait() hashes it here, and so every
    // piece after it.
    (void)actors::async(runtime_, [slot = slot_, hasher = &hasher_] {
      {
        std::lock_guard lock(slot->mutex);
        slot->posted = false;
      }
      if (!claim(*slot)) return;  // the job took it
      hasher->update(slot->piece);
      done(*slot);
    });
  }

  // Returns once every piece added is hashed.
  void wait() {
    if (claim(*slot_)) {
      hasher_.update(slot_->piece);
      done(*slot_);
      return;
    }
    std::unique_lock lock(slot_->mutex);
    slot_->changed.wait(lock, [this] { return slot_->state == State::Idle; });
  }

 private:
  enum class State { Idle, Queued, Running };
  struct Slot {
    std::mutex mutex;
    std::condition_variable changed;
    State state = State::Idle;
    std::string_view piece;
    bool posted = false;  // a task is in the pool's queue
  };

  static bool claim(Slot& slot) {
    std::lock_guard lock(slot.mutex);
    if (slot.state != State::Queued) return false;
    slot.state = State::Running;
    return true;
  }
  static void done(Slot& slot) {
    {
      std::lock_guard lock(slot.mutex);
      slot.state = State::Idle;
    }
    slot.changed.notify_all();
  }

  actors::Runtime& runtime_;
  fetcher::Hasher& hasher_;
  // Shared with the pool task, which may run (and find nothing to do) after
  // this object is gone.
  std::shared_ptr<Slot> slot_;
};

}  // namespace

// Shared by the producer (write/end/abort, any thread) and the job.
struct LayerStream::State final : TarSource {
  actors::Runtime* runtime = nullptr;
  std::string root;
  LayerStreamOptions options;
  std::unique_ptr<Decompressor> decompressor;
  std::optional<fetcher::Hasher> hasher;
  std::optional<HashBeside> hashing;  // with hasher, on the job's thread only
  Promise<ExtractedLayer> result;

  std::mutex mutex;
  std::condition_variable changed;
  // Guarded by mutex: the chunk offered and not yet taken, how the input ended.
  std::string_view offered;
  std::shared_ptr<Promise<Nothing>> offeredDone;
  bool ended = false;
  std::optional<Error> aborted;  // by the producer
  std::optional<Error> failed;   // the job's error, once it stopped

  // The job's own: the chunk it works on.
  std::string_view current;
  std::shared_ptr<Promise<Nothing>> currentDone;
  bool inputEnded = false;

  Try<std::string_view> read() override {
    for (;;) {
      auto out = decompressor->pull(current);
      if (out.isError()) return out.error();
      if (!out->empty()) {
        if (hashing) hashing->add(*out);
        return *out;
      }
      if (inputEnded) {
        auto ended = decompressor->end();
        if (ended.isError()) return ended.error();
        return std::string_view();
      }
      release();
      std::unique_lock lock(mutex);
      // Waits for the producer; a runtime shutting down does not wait for a
      // producer that may never come (its sockets are going away).
      while (!(offeredDone || ended || aborted)) {
        if (changed.wait_for(lock, std::chrono::milliseconds(500)) == std::cv_status::timeout &&
            !runtime->accepting()) {
          aborted = Error(ErrorKind::Unavailable,
                          "Failed to extract " + options.apply.what + ": the runtime is shutting down");
        }
      }
      if (aborted) return *aborted;
      if (offeredDone) {
        current = std::exchange(offered, {});
        currentDone = std::move(offeredDone);
      } else {
        inputEnded = true;
      }
    }
  }

  // The chunk given back to the producer, who may reuse its memory. An
  // uncompressed layer's pieces are views of it: the one being hashed is
  // waited for. (Inflated pieces are in the decompressor's own buffers.)
  void release() {
    if (hashing && options.compression == Compression::None) hashing->wait();
    if (auto done = std::move(currentDone)) done->set(Nothing{});
  }

  void run() {
    if (hasher) hashing.emplace(*runtime, *hasher);
    auto made = actors::fs::makeDirectories(root);
    auto applied = made.isError() ? Try<ApplyResult>(made.error()) : applyTar(root, *this, options.apply);
    hashing.reset();  // every piece hashed; none is read any more
    Try<ExtractedLayer> outcome = [&]() -> Try<ExtractedLayer> {
      if (applied.isError()) return applied.error();
      ExtractedLayer layer{options.expectedDiffId, std::move(*applied)};
      if (hasher) {
        layer.diffId = hasher->finish();
        if (!options.expectedDiffId.empty() && layer.diffId != options.expectedDiffId) {
          return diffIdMismatch(options.apply.what, layer.diffId, options.expectedDiffId);
        }
      }
      // Durable with the layer: its commit syncs the file system.
      auto recorded = writeRecord(paths::recordOf(root), layer.applied.record, false);
      if (recorded.isError()) return recorded.error();
      layer.applied.record.clear();
      return layer;
    }();
    // Whatever the producer still offers fails with the job's error (or, on
    // success, there is nothing left to offer).
    std::shared_ptr<Promise<Nothing>> current = std::move(currentDone), pending;
    {
      std::lock_guard lock(mutex);
      failed = outcome.isError() ? outcome.error()
                                 : Error(ErrorKind::InvalidArgument, "Failed to extract " + options.apply.what +
                                                                         ": bytes after the end of the layer");
      pending = std::move(offeredDone);
    }
    for (auto* done : {&current, &pending}) {
      if (*done) outcome.isError() ? (*done)->fail(*failed) : (*done)->set(Nothing{});
    }
    if (outcome.isError()) {
      if (options.budget) options.budget->giveBack(decompressor->outputBytes());
      result.fail(outcome.error());
    } else {
      result.set(std::move(*outcome));
    }
  }
};

std::shared_ptr<LayerStream> LayerStream::start(actors::Runtime& runtime, std::string root,
                                                LayerStreamOptions options) {
  auto state = std::make_shared<State>();
  state->runtime = &runtime;
  state->root = std::move(root);
  state->options = std::move(options);
  std::shared_ptr<LayerStream> stream(new LayerStream(state));
  auto decompressor = Decompressor::create(state->options.compression, state->options.apply.what,
                                           state->options.apply.limits.maxLayerBytes);
  if (decompressor.isError()) {
    state->failed = decompressor.error();
    state->result.fail(decompressor.error());
    return stream;
  }
  state->decompressor = std::move(*decompressor);
  state->decompressor->shareBudget(state->options.budget);
  if (state->options.hashDiffId) state->hasher.emplace(*fetcher::Hasher::create("sha256"));
  auto job = actors::async(runtime, [state] { state->run(); });
  job.onFailed([state](const Future<Nothing>& f) {  // the runtime refused the job
    {
      std::lock_guard lock(state->mutex);
      state->failed = f.failure();
    }
    state->result.fail(f.failure());
  });
  return stream;
}

LayerStream::LayerStream(std::shared_ptr<State> state) : state_(std::move(state)) {}

LayerStream::~LayerStream() {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->ended) return;  // the job finishes what it has
  }
  abort(Error(ErrorKind::Cancelled, "Failed to extract " + state_->options.apply.what + ": the download went away"));
}

Future<Nothing> LayerStream::write(std::string_view chunk) {
  auto done = std::make_shared<Promise<Nothing>>();
  {
    std::lock_guard lock(state_->mutex);
    if (state_->failed) return *state_->failed;
    if (state_->aborted) return *state_->aborted;
    if (state_->ended || state_->offeredDone) {
      return Error(ErrorKind::Internal, "LayerStream::write: a write after end() or while one is in flight");
    }
    state_->offered = chunk;
    state_->offeredDone = done;
  }
  state_->changed.notify_one();
  return done->future();
}

void LayerStream::end() {
  {
    std::lock_guard lock(state_->mutex);
    state_->ended = true;
  }
  state_->changed.notify_one();
}

void LayerStream::abort(const Error& error) {
  std::shared_ptr<Promise<Nothing>> pending;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->aborted || state_->failed) return;
    state_->aborted = error;
    pending = std::move(state_->offeredDone);
  }
  state_->changed.notify_one();
  if (pending) pending->fail(error);
}

Future<ExtractedLayer> LayerStream::result() const { return state_->result.future(); }

}  // namespace prov::store
