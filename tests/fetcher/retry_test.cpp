#include <atomic>
#include <chrono>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "fetcher/retry.hpp"
#include "tests/support/await.hpp"

namespace prov::fetcher {
namespace {

using namespace std::chrono_literals;
using actors::Future;
using actors::Promise;

TEST(BackoffTest, GrowsWithJitterUpToTheCap) {
  RetryPolicy policy{.maxAttempts = 10, .initialDelay = 100ms, .maxDelay = 1000ms, .multiplier = 2.0, .jitter = 0.2};
  Backoff backoff(policy, 42);
  const std::vector<double> bases = {100, 200, 400, 800, 1000, 1000};
  for (double base : bases) {
    const auto d = backoff.next().count();
    EXPECT_GE(d, base * 0.8 - 1) << base;
    EXPECT_LE(d, base * 1.2 + 1) << base;
  }
  // Jitter: two seeds give different sequences.
  Backoff a(policy, 1), b(policy, 2);
  bool differ = false;
  for (int i = 0; i < 5; ++i) differ |= a.next() != b.next();
  EXPECT_TRUE(differ);
}

TEST(RetryAfterTest, SecondsAndDates) {
  EXPECT_EQ(Duration(120'000), parseRetryAfter("120"));
  EXPECT_EQ(Duration(0), parseRetryAfter(" 0 "));
  const auto now = std::chrono::system_clock::from_time_t(1790000000);  // 2026-09-21 ...
  std::time_t later = 1790000000 + 30;
  std::tm tm{};
  ::gmtime_r(&later, &tm);
  char date[64];
  std::strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  EXPECT_EQ(Duration(30'000), parseRetryAfter(date, now));
  EXPECT_FALSE(parseRetryAfter("Mon, 01 Jan 2001 00:00:00 GMT", now));  // in the past
  EXPECT_FALSE(parseRetryAfter("soon", now));
  EXPECT_FALSE(parseRetryAfter("-5", now));
  EXPECT_FALSE(parseRetryAfter("", now));
}

class RetryTest : public ::testing::Test {
 protected:
  void SetUp() override { runtime_.clock().pause(); }
  // Advances the paused clock by `step` until `f` completes (bounded).
  template <typename T>
  void drive(const Future<T>& f, std::chrono::milliseconds step = 100ms) {
    for (int i = 0; i < 100000 && f.isPending(); ++i) {
      runtime_.clock().settle();
      if (!f.isPending()) break;
      runtime_.clock().advance(step);
    }
  }
  actors::Runtime runtime_;
  RetryPolicy policy_{.maxAttempts = 4, .initialDelay = 1000ms, .maxDelay = 8000ms, .multiplier = 2.0, .jitter = 0.0};
};

TEST_F(RetryTest, RetriesUnavailableWithBackoffThenSucceeds) {
  std::vector<actors::Clock::TimePoint> starts;
  std::mutex mutex;
  auto start = runtime_.clock().now();
  Future<int> result = retry<int>(
      runtime_.clock(), policy_,
      [&](int n) -> Future<int> {
        std::lock_guard lock(mutex);
        starts.push_back(runtime_.clock().now());
        if (n < 3) return Error(ErrorKind::Unavailable, "503 Service Unavailable");
        return 7;
      },
      {}, 1);
  drive(result);
  AWAIT_EXPECT_EQ(7, result);
  std::lock_guard lock(mutex);
  ASSERT_EQ(3u, starts.size());
  EXPECT_EQ(start, starts[0]);
  EXPECT_EQ(1000ms, std::chrono::duration_cast<std::chrono::milliseconds>(starts[1] - starts[0]));
  EXPECT_EQ(2000ms, std::chrono::duration_cast<std::chrono::milliseconds>(starts[2] - starts[1]));
}

TEST_F(RetryTest, StopsOnANonRetriableError) {
  std::atomic<int> calls{0};
  Future<int> result = retry<int>(runtime_.clock(), policy_, [&](int) -> Future<int> {
    ++calls;
    return Error(ErrorKind::NotFound, "manifest unknown");
  });
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, result);
  EXPECT_EQ(1, calls.load());
}

TEST_F(RetryTest, GivesUpAfterMaxAttempts) {
  std::atomic<int> calls{0};
  Future<int> result = retry<int>(runtime_.clock(), policy_, [&](int) -> Future<int> {
    ++calls;
    return Error(ErrorKind::Unavailable, "connection refused");
  });
  drive(result);
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, result);
  EXPECT_EQ(4, calls.load());
  EXPECT_NE(std::string::npos, result.failure().message.find("Gave up after 4 attempts: connection refused"));
}

TEST_F(RetryTest, HonoursRetryAfterUpToTheCap) {
  RetryPolicy policy = policy_;
  policy.maxRetryAfter = 20'000ms;
  std::vector<actors::Clock::TimePoint> starts;
  std::mutex mutex;
  Future<int> result = retry<int>(
      runtime_.clock(), policy,
      [&](int n) -> Future<int> {
        std::lock_guard lock(mutex);
        starts.push_back(runtime_.clock().now());
        if (n == 1) return Error(ErrorKind::Unavailable, "429 Too Many Requests");  // Retry-After: 5
        if (n == 2) return Error(ErrorKind::Unavailable, "429 again");              // Retry-After: 3600
        return 1;
      },
      [&](const Future<int>& f) {
        std::lock_guard lock(mutex);
        return AttemptFailure{f.failure(), starts.size() == 1 ? Duration(5000) : Duration(3'600'000)};
      });
  drive(result);
  AWAIT_EXPECT_EQ(1, result);
  std::lock_guard lock(mutex);
  ASSERT_EQ(3u, starts.size());
  EXPECT_EQ(5000ms, std::chrono::duration_cast<std::chrono::milliseconds>(starts[1] - starts[0]));
  EXPECT_EQ(20'000ms, std::chrono::duration_cast<std::chrono::milliseconds>(starts[2] - starts[1]));
}

TEST_F(RetryTest, DiscardCancelsTheWaitOrTheAttempt) {
  auto inflight = std::make_shared<Promise<int>>();
  bool attemptDiscardRequested = false;
  inflight->future().onDiscard([&] { attemptDiscardRequested = true; });
  Future<int> waiting = retry<int>(runtime_.clock(), policy_, [&](int n) -> Future<int> {
    if (n == 1) return Error(ErrorKind::Unavailable, "x");
    return inflight->future();
  });
  // First attempt failed; the loop sleeps. Discard during the sleep.
  waiting.discard();
  AWAIT_DISCARDED(waiting);

  Future<int> attempting = retry<int>(runtime_.clock(), policy_, [&](int) { return inflight->future(); });
  attempting.discard();
  EXPECT_TRUE(attemptDiscardRequested);
  inflight->discard();
  AWAIT_DISCARDED(attempting);
}

}  // namespace
}  // namespace prov::fetcher
