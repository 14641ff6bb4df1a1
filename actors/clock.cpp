#include "actors/clock.hpp"

#include <cassert>
#include <map>
#include <mutex>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "actors/runtime_impl.hpp"

namespace prov::actors {

struct Clock::Impl {
  explicit Impl(Runtime& r) : runtime(r), wakeup(r.ioContext()) {}

  TimePoint nowLocked() const { return paused ? frozen : std::chrono::steady_clock::now() + offset; }

  // Takes the timers due at now() out of the queue and posts their callbacks
  // to the io_context; then re-arms the wake-up for the next one.
  void fireDue();
  void armLocked();

  Runtime& runtime;
  mutable std::mutex mutex;
  bool paused = false;
  TimePoint frozen{};
  Duration offset{0};
  std::uint64_t nextId = 1;
  std::map<std::pair<TimePoint, std::uint64_t>, std::function<void()>> timers;
  boost::asio::steady_timer wakeup;  // guarded by `mutex`
};

void Clock::Impl::fireDue() {
  std::vector<std::function<void()>> due;
  {
    std::lock_guard lock(mutex);
    const TimePoint now = nowLocked();
    while (!timers.empty() && timers.begin()->first.first <= now) {
      due.push_back(std::move(timers.begin()->second));
      timers.erase(timers.begin());
    }
    armLocked();
  }
  Runtime::Impl& impl = runtime.impl();
  for (auto& callback : due) {
    impl.eventPosted();
    boost::asio::post(impl.io, [&impl, callback = std::move(callback)] {
      callback();
      impl.eventDone();
    });
  }
}

void Clock::Impl::armLocked() {
  if (paused || timers.empty()) {
    wakeup.cancel();
    return;
  }
  // Real time at which the first deadline (in clock time) is reached.
  const TimePoint first = timers.begin()->first.first;
  wakeup.expires_at(first - offset);
  wakeup.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) fireDue();
  });
}

Clock::Clock(Runtime& runtime) : impl_(std::make_unique<Impl>(runtime)) {}
Clock::~Clock() = default;

Clock::TimePoint Clock::now() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->nowLocked();
}

Clock::Timer Clock::timer(Duration duration, std::function<void()> callback) {
  Timer timer;
  {
    std::lock_guard lock(impl_->mutex);
    if (!impl_->runtime.accepting()) return timer;  // dropped: the runtime is stopping
    timer.deadline = impl_->nowLocked() + std::max(duration, Duration::zero());
    timer.id = impl_->nextId++;
    const bool first = impl_->timers.empty() || timer.deadline < impl_->timers.begin()->first.first;
    impl_->timers.emplace(std::make_pair(timer.deadline, timer.id), std::move(callback));
    if (!first) return timer;
  }
  // A zero duration is due now; a new earliest deadline needs a re-arm.
  impl_->fireDue();
  return timer;
}

bool Clock::cancel(const Timer& timer) {
  std::function<void()> callback;  // destroyed outside the lock
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->timers.find({timer.deadline, timer.id});
  if (it == impl_->timers.end()) return false;
  callback = std::move(it->second);
  impl_->timers.erase(it);
  return true;
}

Future<Nothing> Clock::sleep(Duration duration) {
  auto promise = std::make_shared<Promise<Nothing>>();
  Future<Nothing> future = promise->future();
  Timer timer = this->timer(duration, [promise] { promise->set(Nothing{}); });
  std::weak_ptr<Promise<Nothing>> weak = promise;
  future.onDiscard([this, timer, weak] {
    // Hold the promise: cancelling destroys the timer's callback, the other
    // owner of the promise.
    auto p = weak.lock();
    if (p && cancel(timer)) p->discard();
  });
  return future;
}

std::size_t Clock::pending() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->timers.size();
}

void Clock::pause() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->paused) return;
  impl_->frozen = impl_->nowLocked();
  impl_->paused = true;
  impl_->armLocked();
}

void Clock::resume() {
  {
    std::lock_guard lock(impl_->mutex);
    if (!impl_->paused) return;
    // Continue from the paused time, so that time never goes backwards.
    impl_->offset = impl_->frozen - std::chrono::steady_clock::now();
    impl_->paused = false;
  }
  impl_->fireDue();
}

bool Clock::paused() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->paused;
}

void Clock::advance(Duration duration) {
  {
    std::lock_guard lock(impl_->mutex);
    assert(impl_->paused && "Clock::advance() needs a paused clock");
    impl_->frozen += duration;
  }
  impl_->fireDue();
}

void Clock::settle() { impl_->runtime.settle(); }

void Clock::cancelAll() {
  decltype(impl_->timers) dropped;
  {
    std::lock_guard lock(impl_->mutex);
    dropped.swap(impl_->timers);
    impl_->wakeup.cancel();
  }
}

}  // namespace prov::actors
