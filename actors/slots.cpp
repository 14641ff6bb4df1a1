#include "actors/slots.hpp"

namespace prov::actors {

Future<Nothing> Slots::acquire() {
  if (inUse_ < count_) {
    ++inUse_;
    return Nothing{};
  }
  auto waiter = std::make_shared<Promise<Nothing>>();
  waiters_.push_back(waiter);
  return waiter->future();
}

void Slots::release() {
  while (!waiters_.empty()) {
    auto next = std::move(waiters_.front());
    waiters_.pop_front();
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
