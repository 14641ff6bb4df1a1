#pragma once

// Template definitions for fetcher/retry.hpp.

#include <algorithm>
#include <chrono>
#include <mutex>

#include "actors/log.hpp"

namespace prov::fetcher {
namespace detail {

template <typename T>
class RetryLoop : public std::enable_shared_from_this<RetryLoop<T>> {
 public:
  RetryLoop(actors::Clock& clock, const RetryPolicy& policy, std::uint64_t seed,
            std::function<actors::Future<T>(int)> attempt,
            std::function<AttemptFailure(const actors::Future<T>&)> failure)
      : clock_(clock), policy_(policy), backoff_(policy, seed), attempt_(std::move(attempt)),
        failure_(std::move(failure)) {}

  actors::Future<T> future() const { return promise_.future(); }

  void cancelInflight() {
    std::function<void()> cancel;
    {
      std::lock_guard lock(mutex_);
      cancel = inflight_;
    }
    if (cancel) cancel();
  }

  // One attempt at a time: each step starts only when the previous ended.
  void run() {
    if (promise_.future().hasDiscard()) {
      promise_.discard();
      return;
    }
    ++attempts_;
    actors::Promise<T> started;
    actors::Future<T> attempt = started.future();
    actors::detail::invokeInto(started, attempt_, attempts_);
    setInflight([attempt] { attempt.discard(); });
    auto self = this->shared_from_this();
    attempt.onAny([self](const actors::Future<T>& done) { self->attempted(done); });
    attempt.onAbandoned(
        [self] { self->promise_.fail(Error(ErrorKind::Internal, "A retried operation was abandoned")); });
  }

 private:
  void attempted(const actors::Future<T>& done) {
    if (done.isReady()) {
      promise_.set(done.get());
      return;
    }
    if (done.isDiscarded()) {
      promise_.discard();
      return;
    }
    AttemptFailure failed = failure_ ? failure_(done) : AttemptFailure{done.failure(), std::nullopt};
    if (!retriable(failed.error)) {
      promise_.fail(failed.error);
      return;
    }
    if (attempts_ >= policy_.maxAttempts) {
      promise_.fail(failed.error.withContext("Gave up after " + std::to_string(attempts_) + " attempts"));
      return;
    }
    Duration delay = backoff_.next();
    if (failed.retryAfter) delay = std::max(delay, std::min(*failed.retryAfter, policy_.maxRetryAfter));
    actors::log(actors::LogLevel::Warn, "retry",
                {{"attempt", std::to_string(attempts_)},
                 {"delay_ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(delay).count())},
                 {"error", failed.error.message}});
    if (promise_.future().hasDiscard()) {
      promise_.discard();
      return;
    }
    actors::Future<actors::Nothing> wait = clock_.sleep(delay);
    setInflight([wait] { wait.discard(); });
    auto self = this->shared_from_this();
    wait.onAny([self](const actors::Future<actors::Nothing>& slept) {
      if (slept.isReady()) {
        self->run();
      } else {
        self->promise_.discard();
      }
    });
  }

  void setInflight(std::function<void()> cancel) {
    std::lock_guard lock(mutex_);
    inflight_ = std::move(cancel);
  }

  actors::Clock& clock_;
  RetryPolicy policy_;
  Backoff backoff_;
  std::function<actors::Future<T>(int)> attempt_;
  std::function<AttemptFailure(const actors::Future<T>&)> failure_;
  actors::Promise<T> promise_;
  int attempts_ = 0;
  std::mutex mutex_;
  std::function<void()> inflight_;
};

}  // namespace detail

template <typename T>
actors::Future<T> retry(actors::Clock& clock, const RetryPolicy& policy,
                        std::function<actors::Future<T>(int attempt)> attempt,
                        std::function<AttemptFailure(const actors::Future<T>&)> failure, std::uint64_t seed) {
  auto loop = std::make_shared<detail::RetryLoop<T>>(clock, policy, seed, std::move(attempt), std::move(failure));
  actors::Future<T> result = loop->future();
  std::weak_ptr<detail::RetryLoop<T>> weak = loop;
  result.onDiscard([weak] {
    if (auto l = weak.lock()) l->cancelInflight();
  });
  loop->run();
  return result;
}

}  // namespace prov::fetcher
