#pragma once

// Slots: at most N holders at once, first come first served; a counting
// semaphore whose wait is a future. The download and extraction bound of the
// image store and the blob-transfer bound of the registry puller.
//
//   slots_.acquire().then(defer(self(), &Self::work)) ... then, once the work
//   is done, slots_.release() (exactly once per READY acquire()).
//
// A discard request on a waiting acquire() makes it DISCARDED when its turn
// comes, and the slot passes on. Not thread-safe: owned by one process and
// used on its strand only.

#include <cstddef>
#include <deque>
#include <memory>

#include "actors/future.hpp"

namespace prov::actors {

class Slots {
 public:
  explicit Slots(std::size_t count = 1) : count_(count) {}

  // Takes effect for later acquire() calls.
  void setCount(std::size_t count) { count_ = count; }
  std::size_t count() const { return count_; }
  std::size_t inUse() const { return inUse_; }

  // READY when a slot is the caller's: at once when one is free.
  Future<Nothing> acquire();
  // Gives a slot back: to the first waiter that still wants it, else free.
  void release();

 private:
  std::size_t count_;
  std::size_t inUse_ = 0;
  std::deque<std::shared_ptr<Promise<Nothing>>> waiters_;
};

}  // namespace prov::actors
