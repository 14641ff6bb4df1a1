#pragma once

// The async test harness: wait for a future with a timeout and check how it
// completed. Each macro has an ASSERT form (AWAIT_READY, ...: ends the test on
// failure) and an EXPECT form (AWAIT_EXPECT_READY, ...: records and goes on).
//
//   AWAIT_READY(future);                      // READY within the default 15 s
//   AWAIT_READY_FOR(future, 2s);
//   AWAIT_FAILED(future);  AWAIT_DISCARDED(future);  AWAIT_ABANDONED(future);
//   AWAIT_EXPECT_EQ(42, future);              // READY and equal
//   AWAIT_EXPECT_ERROR(ErrorKind::NotFound, future);   // FAILED with that kind
//
// Waiting blocks the test's own thread only; never use these on a runtime
// thread.

#include <chrono>
#include <sstream>

#include <gtest/gtest.h>

#include "actors/future.hpp"

namespace prov::testing {

inline constexpr std::chrono::seconds kDefaultAwait{15};

template <typename T>
std::string describe(const actors::Future<T>& f) {
  if (f.isReady()) return "READY";
  if (f.isFailed()) {
    return std::string("FAILED (") + actors::toString(f.failure().kind) + "): " + f.failure().message;
  }
  if (f.isDiscarded()) return "DISCARDED";
  if (f.isAbandoned()) return "abandoned";
  return "still PENDING";
}

template <typename T>
::testing::AssertionResult waitOrFail(const char* expr, const actors::Future<T>& f, std::chrono::nanoseconds timeout) {
  if (f.waitFor(timeout) || f.isAbandoned()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "Failed to wait " << std::chrono::duration<double>(timeout).count()
                                       << " s for " << expr;
}

template <typename T>
::testing::AssertionResult awaitReady(const char* expr, const char*, const actors::Future<T>& f,
                                      std::chrono::nanoseconds timeout) {
  if (auto waited = waitOrFail(expr, f, timeout); !waited) return waited;
  if (f.isReady()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expr << " is " << describe(f) << ", expected READY";
}

template <typename T>
::testing::AssertionResult awaitFailed(const char* expr, const char*, const actors::Future<T>& f,
                                       std::chrono::nanoseconds timeout) {
  if (auto waited = waitOrFail(expr, f, timeout); !waited) return waited;
  if (f.isFailed()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expr << " is " << describe(f) << ", expected FAILED";
}

template <typename T>
::testing::AssertionResult awaitDiscarded(const char* expr, const char*, const actors::Future<T>& f,
                                          std::chrono::nanoseconds timeout) {
  if (auto waited = waitOrFail(expr, f, timeout); !waited) return waited;
  if (f.isDiscarded()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expr << " is " << describe(f) << ", expected DISCARDED";
}

template <typename T>
::testing::AssertionResult awaitAbandoned(const char* expr, const char*, const actors::Future<T>& f,
                                          std::chrono::nanoseconds timeout) {
  if (auto waited = waitOrFail(expr, f, timeout); !waited) return waited;
  if (f.isAbandoned()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expr << " is " << describe(f) << ", expected abandoned";
}

template <typename T, typename E>
::testing::AssertionResult awaitEq(const char* eexpr, const char* expr, const E& expected, const actors::Future<T>& f) {
  if (auto ready = awaitReady(expr, "", f, kDefaultAwait); !ready) return ready;
  if (f.get() == expected) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expr << " is READY with " << ::testing::PrintToString(f.get())
                                       << ", expected " << eexpr << " = " << ::testing::PrintToString(expected);
}

template <typename T>
::testing::AssertionResult awaitError(const char* kexpr, const char* expr, actors::ErrorKind kind,
                                      const actors::Future<T>& f) {
  if (auto failed = awaitFailed(expr, "", f, kDefaultAwait); !failed) return failed;
  if (f.failure().kind == kind) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expr << " failed with kind '" << actors::toString(f.failure().kind) << "' ("
                                       << f.failure().message << "), expected " << kexpr;
}

}  // namespace prov::testing

#define AWAIT_READY_FOR(f, t) ASSERT_PRED_FORMAT2(::prov::testing::awaitReady, f, t)
#define AWAIT_READY(f) AWAIT_READY_FOR(f, ::prov::testing::kDefaultAwait)
#define AWAIT_EXPECT_READY(f) EXPECT_PRED_FORMAT2(::prov::testing::awaitReady, f, ::prov::testing::kDefaultAwait)

#define AWAIT_FAILED_FOR(f, t) ASSERT_PRED_FORMAT2(::prov::testing::awaitFailed, f, t)
#define AWAIT_FAILED(f) AWAIT_FAILED_FOR(f, ::prov::testing::kDefaultAwait)
#define AWAIT_EXPECT_FAILED(f) EXPECT_PRED_FORMAT2(::prov::testing::awaitFailed, f, ::prov::testing::kDefaultAwait)

#define AWAIT_DISCARDED_FOR(f, t) ASSERT_PRED_FORMAT2(::prov::testing::awaitDiscarded, f, t)
#define AWAIT_DISCARDED(f) AWAIT_DISCARDED_FOR(f, ::prov::testing::kDefaultAwait)
#define AWAIT_EXPECT_DISCARDED(f) \
  EXPECT_PRED_FORMAT2(::prov::testing::awaitDiscarded, f, ::prov::testing::kDefaultAwait)

#define AWAIT_ABANDONED(f) ASSERT_PRED_FORMAT2(::prov::testing::awaitAbandoned, f, ::prov::testing::kDefaultAwait)

#define AWAIT_ASSERT_EQ(expected, f) ASSERT_PRED_FORMAT2(::prov::testing::awaitEq, expected, f)
#define AWAIT_EXPECT_EQ(expected, f) EXPECT_PRED_FORMAT2(::prov::testing::awaitEq, expected, f)

#define AWAIT_ASSERT_ERROR(kind, f) ASSERT_PRED_FORMAT2(::prov::testing::awaitError, kind, f)
#define AWAIT_EXPECT_ERROR(kind, f) EXPECT_PRED_FORMAT2(::prov::testing::awaitError, kind, f)
