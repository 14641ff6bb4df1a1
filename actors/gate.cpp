#include "actors/gate.hpp"

#include <cassert>

namespace prov::actors {

bool Gate::enter() {
  std::lock_guard lock(mutex_);
  if (closed_) return false;
  ++inside_;
  return true;
}

void Gate::leave() {
  bool drained;
  {
    std::lock_guard lock(mutex_);
    assert(inside_ > 0 && "Gate::leave() without enter()");
    drained = --inside_ == 0 && closed_;
  }
  if (drained) drained_.set(Nothing{});
}

Future<Nothing> Gate::close() {
  bool drained;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    drained = inside_ == 0;
  }
  if (drained) drained_.set(Nothing{});  // no-op after the first time
  return drained_.future();
}

bool Gate::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

std::size_t Gate::inside() const {
  std::lock_guard lock(mutex_);
  return inside_;
}

}  // namespace prov::actors
