#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "tests/support/await.hpp"

namespace prov::actors {
namespace {

class Counter : public Process<Counter> {
 public:
  // Counts to `n` with synchronous iterations.
  Future<long> countTo(long n) {
    count_ = 0;
    return loop(
        self(), [this] { return count_; },
        [this, n](long c) -> ControlFlow<long> {
          if (c >= n) return Break(c);
          ++count_;
          return Continue();
        });
  }

  // Every other iteration waits on a future completed by a dispatch, so the
  // loop keeps resuming from fresh dispatches.
  Future<long> countAsync(long n) {
    count_ = 0;
    return loop(
        self(),
        [this]() -> Future<long> {
          if (count_ % 2 == 0) return count_;
          return dispatch(self(), [this] { return count_; });
        },
        [this, n](long c) -> Future<ControlFlow<long>> {
          if (c >= n) return ControlFlow<long>(Break(c));
          ++count_;
          return ControlFlow<long>(Continue());
        });
  }

  Future<Nothing> forever(std::shared_ptr<Promise<int>> gate) {
    return loop(
        self(), [gate] { return gate->future(); }, [](int) -> ControlFlow<Nothing> { return Continue(); });
  }

  Future<int> failing() {
    return loop(
        self(), [] { return Future<int>(Error(ErrorKind::IO, "read failed")); },
        [](int) -> ControlFlow<int> { return Continue(); });
  }

 private:
  long count_ = 0;
};

class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override { pid_ = spawn(runtime_, counter_); }
  void TearDown() override {
    terminate(pid_);
    wait(pid_);
  }
  Runtime runtime_;
  Counter counter_;
  PID<Counter> pid_;
};

// The bound only guards against a hang: under ThreadSanitizer on a busy
// 2-core machine a million iterations took over 15 s (as its sibling).
TEST_F(LoopTest, MillionSynchronousIterationsWithoutStackGrowth) {
  Future<long> f = dispatch(pid_, &Counter::countTo, 1000000L);
  AWAIT_READY_FOR(f, std::chrono::seconds(120));
  EXPECT_EQ(1000000L, f.get());
}

TEST_F(LoopTest, MillionIterationsResumingFromDispatches) {
  Future<long> f = dispatch(pid_, &Counter::countAsync, 1000000L);
  AWAIT_READY_FOR(f, std::chrono::seconds(120));
  EXPECT_EQ(1000000L, f.get());
}

TEST_F(LoopTest, FailureStopsTheLoop) { AWAIT_EXPECT_ERROR(ErrorKind::IO, dispatch(pid_, &Counter::failing)); }

TEST_F(LoopTest, DiscardReachesTheInflightFuture) {
  auto gate = std::make_shared<Promise<int>>();
  bool requested = false;
  gate->future().onDiscard([&] { requested = true; });
  Future<Nothing> f = dispatch(pid_, &Counter::forever, gate);
  // forever() queues the loop's first step; two round trips later it has run.
  AWAIT_READY(dispatch(pid_, [] {}));
  AWAIT_READY(dispatch(pid_, [] {}));
  f.discard();
  EXPECT_TRUE(requested);
  gate->discard();
  AWAIT_DISCARDED(f);
}

TEST_F(LoopTest, LoopOnTerminatedProcessFails) {
  terminate(pid_);
  wait(pid_);
  Future<long> f = loop(
      pid_, [] { return 1L; }, [](long) -> ControlFlow<long> { return Continue(); });
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, f);
}

}  // namespace
}  // namespace prov::actors
