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
  for (;;) {
    // The most urgent; the first to come among equals. A scan: waiters are
    // few (layers of pulls in progress), and priorities change in place.
    // Waiters given up on go on the way, whatever their rank.
    std::vector<std::shared_ptr<Promise<int>>> gaveUp;
    auto best = waiters_.end();
    int bestPriority = 0;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.promise->future().hasDiscard()) {
        gaveUp.push_back(std::move(it->second.promise));
        it = waiters_.erase(it);
        continue;
      }
      const int p = it->second.priority->load();
      if (best == waiters_.end() || p > bestPriority) {
        best = it;
        bestPriority = p;
      }
      ++it;
    }
    for (auto& promise : gaveUp) promise->discard();
    if (!gaveUp.empty()) continue;  // their callbacks may have changed the waiters
    if (best == waiters_.end() || !mayRun(bestPriority)) return;
    const auto promise = best->second.promise;
    waiters_.erase(best);
    ++inUse_;
    running_.insert(bestPriority);
    promise->set(bestPriority);
  }
}

}  // namespace prov::actors
