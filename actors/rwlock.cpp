#include "actors/rwlock.hpp"

#include <cassert>

namespace prov::actors {

ReadWriteLock::~ReadWriteLock() {
  self_.reset();
  // Destroying the waiters' promises abandons their futures.
  std::deque<std::shared_ptr<Waiter>> dropped;
  std::lock_guard lock(mutex_);
  dropped.swap(waiters_);
}

Future<Nothing> ReadWriteLock::readLock() { return enqueue(false); }
Future<Nothing> ReadWriteLock::writeLock() { return enqueue(true); }

Future<Nothing> ReadWriteLock::enqueue(bool write) {
  auto waiter = std::make_shared<Waiter>();
  waiter->write = write;
  Future<Nothing> future = waiter->promise.future();
  std::vector<std::shared_ptr<Waiter>> granted;
  {
    std::lock_guard lock(mutex_);
    waiter->id = nextId_++;
    waiters_.push_back(waiter);
    granted = grantLocked();
  }
  for (auto& w : granted) w->promise.set(Nothing{});
  if (future.isPending()) {
    std::weak_ptr<ReadWriteLock*> weak = self_;
    future.onDiscard([weak, id = waiter->id] {
      if (auto self = weak.lock()) (*self)->cancel(id);
    });
  }
  return future;
}

std::vector<std::shared_ptr<ReadWriteLock::Waiter>> ReadWriteLock::grantLocked() {
  std::vector<std::shared_ptr<Waiter>> granted;
  while (!waiters_.empty() && !writer_) {
    auto& front = waiters_.front();
    if (front->write) {
      if (readers_ > 0) break;
      writer_ = true;
    } else {
      ++readers_;
    }
    granted.push_back(std::move(front));
    waiters_.pop_front();
  }
  return granted;
}

void ReadWriteLock::cancel(std::uint64_t id) {
  std::shared_ptr<Waiter> cancelled;
  std::vector<std::shared_ptr<Waiter>> granted;
  {
    std::lock_guard lock(mutex_);
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
      if ((*it)->id == id) {
        cancelled = std::move(*it);
        waiters_.erase(it);
        break;
      }
    }
    if (!cancelled) return;  // already granted
    // A writer leaving the queue may let the readers behind it in.
    granted = grantLocked();
  }
  cancelled->promise.discard();
  for (auto& w : granted) w->promise.set(Nothing{});
}

void ReadWriteLock::readLockReentrant() {
  std::lock_guard lock(mutex_);
  assert(readers_ > 0 && "readLockReentrant() without a read lock held");
  ++readers_;
}

void ReadWriteLock::readUnlock() {
  std::vector<std::shared_ptr<Waiter>> granted;
  {
    std::lock_guard lock(mutex_);
    assert(readers_ > 0 && "readUnlock() without a read lock held");
    --readers_;
    granted = grantLocked();
  }
  for (auto& w : granted) w->promise.set(Nothing{});
}

void ReadWriteLock::writeUnlock() {
  std::vector<std::shared_ptr<Waiter>> granted;
  {
    std::lock_guard lock(mutex_);
    assert(writer_ && "writeUnlock() without the write lock held");
    writer_ = false;
    granted = grantLocked();
  }
  for (auto& w : granted) w->promise.set(Nothing{});
}

std::size_t ReadWriteLock::readers() const {
  std::lock_guard lock(mutex_);
  return readers_;
}

bool ReadWriteLock::writerHolds() const {
  std::lock_guard lock(mutex_);
  return writer_;
}

std::size_t ReadWriteLock::waiting() const {
  std::lock_guard lock(mutex_);
  return waiters_.size();
}

}  // namespace prov::actors
