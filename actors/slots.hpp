#pragma once

// Slots: at most N pieces of work at once, higher priority first, first
// come first served among equals. The extractor's bound on layers that
// download and extract at once, and the registry puller's on blob transfers.
//
//   slots_.setPost([pid = self()](std::function<void()> f) { defer(pid, std::move(f))(); });
//   return slots_.run<Staged>([this, layer] { return extract(layer); }, priority);
//
// run(work) calls work() once a slot is the caller's (at once when one is
// free), on the owner's strand, and gives the slot back when the future
// work() returned completes, however it completes. A discard requested on
// run()'s result before the slot came drops the work (it is never called;
// the result is DISCARDED, on the owner's strand, and no slot is taken);
// one requested later reaches work()'s future. A slot is never lost: each grant is given back
// exactly once.
//
// Priority: a number, or a shared one (Priority) that its owner may raise
// while the work waits: a pull that a more urgent caller joined. After
// raising one, call reconsider(): the waiters are ranked by the values at
// their arrival or the last reconsider() (a raise can also make a waiter
// eligible for an extra slot). A grant takes the first of that ranking, so
// thousands may wait.
//
// Extra slots (setExtra(k), 0 by default): up to k pieces of work beyond
// the bound, each only for a waiter more urgent than every piece running.
// An urgent request does not wait for a long one to end, and nothing is
// throttled while none comes: the bound holds for work of one priority.
//
// Not thread-safe: owned by one process and used on its strand only; `post`
// must run what it is given on that process (actors::defer on its PID) or
// drop it once the process is gone.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "actors/future.hpp"

namespace prov::actors {

// Raises a shared priority to `priority` if it is lower; true if it rose.
// Call the Slots' reconsider() after (on its owner's strand).
inline bool raisePriority(std::atomic<int>& value, int priority) {
  int now = value.load();
  while (now < priority) {
    if (value.compare_exchange_weak(now, priority)) return true;
  }
  return false;
}

class Slots {
 public:
  using Post = std::function<void(std::function<void()>)>;
  using Priority = std::shared_ptr<const std::atomic<int>>;

  explicit Slots(std::size_t count = 1) : count_(count) {}

  // Takes effect for later grants. Set `post` before the first run().
  void setCount(std::size_t count) { count_ = count; }
  void setExtra(std::size_t extra) { extra_ = extra; }
  void setPost(Post post) { post_ = std::move(post); }
  std::size_t count() const { return count_; }
  std::size_t extra() const { return extra_; }
  std::size_t inUse() const { return inUse_; }
  std::size_t waiting() const { return waiters_.size(); }

  template <typename T>
  Future<T> run(std::function<Future<T>()> work, int priority = 0) {
    return run<T>(std::move(work), std::make_shared<const std::atomic<int>>(priority));
  }

  template <typename T>
  Future<T> run(std::function<Future<T>()> work, Priority priority) {
    auto result = std::make_shared<Promise<T>>();
    Future<int> slot = acquire(std::move(priority));
    // A waiter given up on leaves the queue at once (grant() drops it).
    result->future().onDiscard([this, slot, post = post_] {
      slot.discard();
      post([this] {
        ++discards_;
        grant();
      });
    });
    // A granted slot calls back at once, on this strand: in acquire() when
    // one was free, in a later grant otherwise.
    slot.onAny([this, post = post_, result, work = std::move(work)](const Future<int>& granted) {
      if (!granted.isReady()) {
        result->discard();  // given up while waiting: never got a slot
        return;
      }
      const int at = granted.get();
      if (result->future().hasDiscard()) {
        result->discard();
        release(at);
        return;
      }
      Future<T> running = work();
      result->associate(running);
      running.onAny([this, post, at] { post([this, at] { release(at); }); });
    });
    return result->future();
  }

  // Grants what may run now: after a waiter's priority was raised.
  void reconsider();

 private:
  struct Waiter {
    Priority priority;
    std::shared_ptr<Promise<int>> promise;
  };

  // READY, with the priority the slot was granted at, when a slot is the
  // caller's. A waiter whose future has a discard request is dropped
  // (DISCARDED) when it would be granted.
  Future<int> acquire(Priority priority);
  // Gives back a slot granted at `priority`; grants what may run then.
  void release(int priority);
  // While the most urgent waiter may run, grants it a slot.
  void grant();
  bool mayRun(int priority) const;

  // Drops the waiters given up on (their futures have a discard request).
  void dropGivenUp();

  std::size_t count_;
  std::size_t extra_ = 0;
  std::size_t inUse_ = 0;
  Post post_;
  std::uint64_t arrivals_ = 0;
  std::map<std::uint64_t, Waiter> waiters_;  // by arrival
  // The waiters most urgent first, then by arrival: (-priority, arrival),
  // with the priority as it was at their arrival or the last reconsider()
  // (a waiter found raised since is moved when it comes first). A burst of
  // thousands waits here: a grant takes the first, not a scan of them all.
  std::set<std::pair<int, std::uint64_t>> order_;
  std::size_t discards_ = 0;    // discards requested since the last drop
  std::multiset<int> running_;  // the priorities slots were granted at
};

}  // namespace prov::actors
