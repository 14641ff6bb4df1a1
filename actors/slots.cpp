#include "actors/slots.hpp"

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
  waiters_.emplace(arrivals_++, Waiter{std::move(priority), promise});
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

void Slots::grant() {
  while (!waiters_.empty()) {
    // The most urgent; the first to come among equals. A scan: waiters are
    // few (layers of pulls in progress), and priorities change in place.
    auto best = waiters_.begin();
    int bestPriority = best->second.priority->load();
    for (auto it = std::next(waiters_.begin()); it != waiters_.end(); ++it) {
      const int p = it->second.priority->load();
      if (p > bestPriority) {
        best = it;
        bestPriority = p;
      }
    }
    const auto promise = best->second.promise;
    if (promise->future().hasDiscard()) {
      waiters_.erase(best);
      promise->discard();
      continue;
    }
    if (!mayRun(bestPriority)) return;
    waiters_.erase(best);
    ++inUse_;
    running_.insert(bestPriority);
    promise->set(bestPriority);
  }
}

}  // namespace prov::actors
