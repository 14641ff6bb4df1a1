#include "actors/slots.hpp"

#include <vector>

namespace prov::actors {

bool Slots::mayRun(int priority) const {
  if (inUse_ < count_) return true;
  return inUse_ < count_ + extra_ && (running_.empty() || priority > *running_.rbegin());
}

Future<int> Slots::acquire(Priority priority) {
  const int now = priority->load();
  if (waiters_.empty() && mayRun(now)) {
    ++inUse_;
    running_.insert(now);
    return now;
  }
  auto promise = std::make_shared<Promise<int>>();
  const std::uint64_t arrival = arrivals_++;
  waiters_.emplace(arrival, Waiter{std::move(priority), promise});
  order_.emplace(-now, arrival);
  // It may be more urgent than the waiters before it.
  grant();
  return promise->future();
}

void Slots::release(int priority) {
  auto it = running_.find(priority);
  if (it != running_.end()) running_.erase(it);
  if (inUse_ > 0) --inUse_;
  grant();
}

void Slots::reconsider() {
  order_.clear();
  for (const auto& [arrival, waiter] : waiters_) order_.emplace(-waiter.priority->load(), arrival);
  grant();
}

void Slots::dropGivenUp() {
  std::vector<std::shared_ptr<Promise<int>>> gaveUp;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->second.promise->future().hasDiscard()) {
      order_.erase({-it->second.priority->load(), it->first});
      gaveUp.push_back(std::move(it->second.promise));
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
  discards_ = 0;
  // Last: their callbacks may call back into this.
  for (auto& promise : gaveUp) promise->discard();
}

void Slots::grant() {
  for (;;) {
    // Waiters given up on go first, whatever their rank (a scan, only
    // after a discard was asked for).
    if (discards_ > 0) {
      dropGivenUp();
      continue;
    }
    if (order_.empty()) return;
    const auto [key, arrival] = *order_.begin();
    auto it = waiters_.find(arrival);
    if (it == waiters_.end()) {
      // Dropped after a raise not yet reconsidered: dropGivenUp() looked
      // for it under its new priority, and its old place stayed behind.
      order_.erase(order_.begin());
      continue;
    }
    const int p = it->second.priority->load();
    if (-key != p) {  // raised since it was placed: placed again
      order_.erase(order_.begin());
      order_.emplace(-p, arrival);
      continue;
    }
    if (it->second.promise->future().hasDiscard()) {  // its discard is on its way
      ++discards_;
      continue;
    }
    if (!mayRun(p)) return;
    const auto promise = it->second.promise;
    order_.erase(order_.begin());
    waiters_.erase(it);
    ++inUse_;
    running_.insert(p);
    promise->set(p);
  }
}

}  // namespace prov::actors
