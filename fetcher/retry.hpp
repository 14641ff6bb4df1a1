#pragma once

// Retrying what failed for a reason that may pass: exponential backoff with
// jitter, at most `maxAttempts` attempts, the server's Retry-After honoured
// (up to a cap, so a hostile registry cannot park a pull for a day). Waiting
// uses the runtime's Clock, so tests advance time instead of sleeping.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string_view>

#include "actors/clock.hpp"
#include "actors/random.hpp"
#include "fetcher/types.hpp"

namespace prov::fetcher {

using Duration = std::chrono::milliseconds;

struct RetryPolicy {
  int maxAttempts = 5;
  Duration initialDelay{200};
  Duration maxDelay{30'000};
  double multiplier = 2.0;
  double jitter = 0.2;  // each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
  Duration maxRetryAfter{60'000};
};

// The delays between attempts: initial, initial * multiplier, ..., capped at
// maxDelay, each with jitter. Deterministic for a given seed.
class Backoff {
 public:
  Backoff(const RetryPolicy& policy, std::uint64_t seed);
  Duration next();

 private:
  RetryPolicy policy_;
  double base_;
  std::mt19937_64 random_;
};

// Connection trouble, 5xx and 429 (Unavailable) and timeouts may pass.
bool retriable(const Error& error);

// A Retry-After header value: delta-seconds or an HTTP-date (relative to
// `now`). None when it is malformed or in the past.
std::optional<Duration> parseRetryAfter(std::string_view value,
                                        std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// What an attempt reports on failure: the error, and the server's
// Retry-After if it sent one.
struct AttemptFailure {
  Error error;
  std::optional<Duration> retryAfter;
};

// Runs attempt(n) for n = 1, 2, ... until one succeeds, one fails with a
// non-retriable error (returned as it is), or maxAttempts have failed (the
// last error, its message saying how many attempts were made). `failure`
// maps a failed attempt's future to an AttemptFailure (default: the error,
// no Retry-After). Discarding the result discards the attempt in flight or
// cancels the wait.
template <typename T>
actors::Future<T> retry(actors::Clock& clock, const RetryPolicy& policy,
                        std::function<actors::Future<T>(int attempt)> attempt,
                        std::function<AttemptFailure(const actors::Future<T>&)> failure = {},
                        std::uint64_t seed = actors::randomSeed());

}  // namespace prov::fetcher

#include "fetcher/impl/retry.hpp"
