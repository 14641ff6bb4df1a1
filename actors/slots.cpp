#include "actors/slots.hpp"

namespace prov::actors {

Future<Nothing> Slots::acquire(int priority) {
  if (inUse_ < count_) {
    ++inUse_;
    return Nothing{};
  }
  auto waiter = std::make_shared<Promise<Nothing>>();
  waiters_.emplace(std::make_pair(-static_cast<std::int64_t>(priority), arrivals_++), waiter);
  return waiter->future();
}

void Slots::release() {
  while (!waiters_.empty()) {
    auto next = std::move(waiters_.begin()->second);
    waiters_.erase(waiters_.begin());
    if (next->future().hasDiscard()) {
      next->discard();
      continue;
    }
    next->set(Nothing{});  // the slot passes on
    return;
  }
  if (inUse_ > 0) --inUse_;
}

}  // namespace prov::actors
