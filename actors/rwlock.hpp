#pragma once

// ReadWriteLock: an asynchronous reader-writer lock whose acquisitions are
// futures. Writer-preferring and FIFO: once a writer waits, later readers
// queue behind it; waiters are granted strictly in arrival order, with a run
// of consecutive readers granted together. The provisioner takes it for read
// in provision/destroy and for write in pruneImages.
//
// Re-entrancy. A holder of a read lock that needs another read lock (Mesos's
// recursive destroy of nested containers) must NOT call readLock(): behind a
// queued writer that would wait for itself. It calls readLockReentrant(),
// which is granted at once, whatever waits, because the caller's own read
// lock already keeps writers out. Each grant, re-entrant or not, is released
// by one readUnlock().
//
// A pending acquisition whose future gets a discard request leaves the queue
// and becomes DISCARDED. All members are thread-safe; callbacks of granted
// futures run on the thread that unlocks (or at once, if granted at once).

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>

#include "actors/future.hpp"

namespace prov::actors {

class ReadWriteLock {
 public:
  ReadWriteLock() = default;
  ~ReadWriteLock();
  ReadWriteLock(const ReadWriteLock&) = delete;
  ReadWriteLock& operator=(const ReadWriteLock&) = delete;

  Future<Nothing> readLock();
  Future<Nothing> writeLock();
  // Precondition: the caller holds a read lock.
  void readLockReentrant();
  void readUnlock();
  void writeUnlock();

  // For tests and metrics.
  std::size_t readers() const;
  bool writerHolds() const;
  std::size_t waiting() const;

 private:
  struct Waiter {
    bool write = false;
    std::uint64_t id = 0;
    Promise<Nothing> promise;
  };

  Future<Nothing> enqueue(bool write);
  // Grants what may be granted; returns the promises to set outside the lock.
  std::vector<std::shared_ptr<Waiter>> grantLocked();
  void cancel(std::uint64_t id);

  mutable std::mutex mutex_;
  std::size_t readers_ = 0;
  bool writer_ = false;
  std::uint64_t nextId_ = 1;
  std::deque<std::shared_ptr<Waiter>> waiters_;
  // Shared with discard callbacks, which may outlive the lock.
  std::shared_ptr<ReadWriteLock*> self_ = std::make_shared<ReadWriteLock*>(this);
};

}  // namespace prov::actors
