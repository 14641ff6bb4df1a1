#pragma once

// Clock: the runtime's time and timers. Tests pause it and advance it by hand,
// so timeout, retry and backoff tests never sleep:
//
//   runtime.clock().pause();
//   auto f = future.after(runtime.clock(), 30s, onTimeout);
//   runtime.clock().advance(30s);   // due timers fire
//   runtime.clock().settle();       // ... and everything they set off has run
//
// Timer callbacks run on a runtime worker thread, never under the clock's
// lock. All members are thread-safe.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "actors/future.hpp"

namespace prov::actors {

class Runtime;

class Clock {
 public:
  using Duration = std::chrono::nanoseconds;
  using TimePoint = std::chrono::steady_clock::time_point;

  struct Timer {
    TimePoint deadline{};
    std::uint64_t id = 0;
  };

  explicit Clock(Runtime& runtime);
  ~Clock();
  Clock(const Clock&) = delete;
  Clock& operator=(const Clock&) = delete;

  // Monotonic time; frozen while paused, moved only by advance().
  TimePoint now() const;

  // Runs `callback` once `duration` of clock time has passed.
  Timer timer(Duration duration, std::function<void()> callback);
  // True when the timer had not fired yet (it now never will).
  bool cancel(const Timer& timer);

  // A future that becomes READY after `duration`. Discarding it cancels the
  // timer and makes it DISCARDED.
  Future<Nothing> sleep(Duration duration);

  // Timers set and not yet fired or cancelled (for tests that wait until a
  // component has set its timer before they advance the clock).
  std::size_t pending() const;

  void pause();
  void resume();
  bool paused() const;
  // Moves paused time forward and fires the timers now due. Precondition:
  // paused().
  void advance(Duration duration);
  // Waits until the timers due at now() have fired and every event they
  // posted has run (Runtime::settle).
  void settle();

  // Drops every pending timer (their callbacks are destroyed unrun). Called by
  // Runtime::shutdown().
  void cancelAll();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- Future::after (declared in future.hpp; defined here, where Clock is) ---------

template <typename T>
template <typename F>
Future<T> Future<T>::after(Clock& clock, std::chrono::nanoseconds duration, F&& f) const {
  struct Shared {
    Promise<T> promise;
    std::atomic<bool> decided{false};
    std::decay_t<F> onTimeout;
    explicit Shared(F&& fn) : onTimeout(std::forward<F>(fn)) {}
  };
  auto shared = std::make_shared<Shared>(std::forward<F>(f));
  Future<T> result = shared->promise.future();
  detail::propagateDiscard(result, *this);

  Future<T> source = *this;
  Clock::Timer timer = clock.timer(duration, [shared, source] {
    if (!shared->decided.exchange(true)) {
      detail::invokeInto(shared->promise, shared->onTimeout, source);
    }
  });
  onAny([shared, timer, &clock](const Future<T>& completed) {
    if (!shared->decided.exchange(true)) {
      clock.cancel(timer);
      shared->promise.associate(completed);
    }
  });
  return result;
}

}  // namespace prov::actors
