#pragma once

// Slots: at most N pieces of work at once, higher priority first, first
// come first served among equals. The extractor's bound on layers that
// download and extract at once, and the registry puller's on blob transfers.
//
//   slots_.setPost([pid = self()](std::function<void()> f) { defer(pid, std::move(f))(); });
//   return slots_.run<Staged>([this, layer] { return extract(layer); });
//
// run(work) calls work() once a slot is the caller's (at once when one is
// free), on the owner's strand, and gives the slot back when the future
// work() returned completes, however it completes. A discard requested on
// run()'s result before the slot came drops the work (it is never called;
// the result is DISCARDED and no slot is taken); one requested later
// reaches work()'s future. A slot is never lost: each grant is given back
// exactly once.
//
// Not thread-safe: owned by one process and used on its strand only; `post`
// must run what it is given on that process (actors::defer on its PID) or
// drop it once the process is gone.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <utility>

#include "actors/future.hpp"

namespace prov::actors {

class Slots {
 public:
  using Post = std::function<void(std::function<void()>)>;

  explicit Slots(std::size_t count = 1) : count_(count) {}

  // Takes effect for later run() calls. Set `post` before the first.
  void setCount(std::size_t count) { count_ = count; }
  void setPost(Post post) { post_ = std::move(post); }
  std::size_t count() const { return count_; }
  std::size_t inUse() const { return inUse_; }
  std::size_t waiting() const { return waiters_.size(); }

  template <typename T>
  Future<T> run(std::function<Future<T>()> work, int priority = 0) {
    auto result = std::make_shared<Promise<T>>();
    Future<Nothing> slot = acquire(priority);
    result->future().onDiscard([slot] { slot.discard(); });
    // A granted slot calls back at once, on this strand: in acquire() when
    // one was free, in release() when one passed on.
    slot.onAny([this, post = post_, result, work = std::move(work)](const Future<Nothing>& granted) {
      if (!granted.isReady()) {
        result->discard();  // given up while waiting: never got a slot
        return;
      }
      if (result->future().hasDiscard()) {
        result->discard();
        release();
        return;
      }
      Future<T> running = work();
      result->associate(running);
      running.onAny([this, post] { post([this] { release(); }); });
    });
    return result->future();
  }

 private:
  // READY when a slot is the caller's. A waiter whose future has a discard
  // request is skipped (DISCARDED) when its turn comes.
  Future<Nothing> acquire(int priority);
  // Gives a slot back: to the first waiter that still wants it, else free.
  void release();

  std::size_t count_;
  std::size_t inUse_ = 0;
  Post post_;
  std::uint64_t arrivals_ = 0;
  // By (-priority, arrival): the first is the next to get a slot.
  std::map<std::pair<std::int64_t, std::uint64_t>, std::shared_ptr<Promise<Nothing>>> waiters_;
};

}  // namespace prov::actors
