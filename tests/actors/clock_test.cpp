#include <atomic>
#include <chrono>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "tests/support/await.hpp"

namespace prov::actors {
namespace {

using namespace std::chrono_literals;

TEST(ClockTest, PausedTimeMovesOnlyByAdvance) {
  Runtime runtime;
  Clock& clock = runtime.clock();
  clock.pause();
  const auto start = clock.now();
  EXPECT_EQ(start, clock.now());
  clock.advance(5s);
  EXPECT_EQ(start + 5s, clock.now());
  clock.resume();
  EXPECT_GE(clock.now(), start + 5s);  // never goes back
}

TEST(ClockTest, TimersFireInDeadlineOrderOnAdvance) {
  Runtime runtime;
  Clock& clock = runtime.clock();
  clock.pause();
  std::mutex mutex;
  std::vector<int> fired;
  auto record = [&](int n) {
    return [&, n] {
      std::lock_guard lock(mutex);
      fired.push_back(n);
    };
  };
  clock.timer(3s, record(3));
  clock.timer(1s, record(1));
  Clock::Timer cancelled = clock.timer(2s, record(2));
  EXPECT_TRUE(clock.cancel(cancelled));
  EXPECT_FALSE(clock.cancel(cancelled));

  clock.advance(999ms);
  clock.settle();
  {
    std::lock_guard lock(mutex);
    EXPECT_TRUE(fired.empty());
  }
  clock.advance(1ms);
  clock.settle();
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(std::vector<int>{1}, fired);
  }
  clock.advance(1h);
  clock.settle();
  std::lock_guard lock(mutex);
  EXPECT_EQ((std::vector<int>{1, 3}), fired);
}

TEST(ClockTest, SleepAndDiscard) {
  Runtime runtime;
  Clock& clock = runtime.clock();
  clock.pause();
  Future<Nothing> nap = clock.sleep(10s);
  Future<Nothing> cancelled = clock.sleep(10s);
  cancelled.discard();
  EXPECT_TRUE(cancelled.isDiscarded());
  clock.advance(10s);
  AWAIT_READY(nap);
}

TEST(ClockTest, RealTimeTimerFires) {
  Runtime runtime;
  AWAIT_READY(runtime.clock().sleep(1ms));
}

TEST(ClockTest, AfterTimesOutWithoutSleeping) {
  Runtime runtime;
  Clock& clock = runtime.clock();
  clock.pause();
  Promise<int> slow;
  bool discardRequested = false;
  slow.future().onDiscard([&] { discardRequested = true; });
  Future<int> guarded = slow.future().after(clock, 30s, [](const Future<int>& f) -> Future<int> {
    f.discard();
    return Error(ErrorKind::Timeout, "Failed to get the thing within 30 s");
  });
  clock.advance(29s);
  clock.settle();
  EXPECT_TRUE(guarded.isPending());
  clock.advance(1s);
  AWAIT_EXPECT_ERROR(ErrorKind::Timeout, guarded);
  EXPECT_TRUE(discardRequested);
}

TEST(ClockTest, AfterFollowsSourceWhenItCompletesFirst) {
  Runtime runtime;
  Clock& clock = runtime.clock();
  clock.pause();
  Promise<int> fast;
  bool timedOut = false;
  Future<int> guarded = fast.future().after(clock, 30s, [&](const Future<int>&) {
    timedOut = true;
    return -1;
  });
  fast.set(7);
  AWAIT_EXPECT_EQ(7, guarded);
  clock.advance(1min);
  clock.settle();
  EXPECT_FALSE(timedOut);
}

TEST(ClockTest, BackoffSequenceWithTestClock) {
  // The shape retry code uses: sleep, try again, double the delay.
  Runtime runtime;
  Clock& clock = runtime.clock();
  clock.pause();
  struct Retrier : Process<Retrier> {
    Future<int> run(Clock* clock) {
      return loop(
          self(), [this, clock] { return clock->sleep(delay_); },
          [this](const Nothing&) -> ControlFlow<int> {
            ++attempts_;
            if (attempts_ == 4) return Break(attempts_);
            delay_ *= 2;
            return Continue();
          });
    }
    std::chrono::nanoseconds delay_ = 1s;
    int attempts_ = 0;
  } retrier;
  PID<Retrier> pid = spawn(runtime, retrier);
  const auto start = clock.now();
  Future<int> attempts = dispatch(pid, &Retrier::run, &clock);
  for (int i = 0; i < 20 && attempts.isPending(); ++i) {
    clock.settle();
    clock.advance(1s);
  }
  AWAIT_EXPECT_EQ(4, attempts);
  // 1 + 2 + 4 + 8 seconds of clock time, none of it slept.
  EXPECT_GE(clock.now() - start, 15s);
  terminate(pid);
  wait(pid);
}

}  // namespace
}  // namespace prov::actors
