#pragma once

// Template definitions for actors/future.hpp. Read that header for the
// contract; this one is how it is kept. Future::after is defined in clock.hpp.

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <string>

#include "actors/impl/callback.hpp"

namespace prov::actors {
namespace detail {

template <typename T>
struct FutureState {
  enum class Status { Pending, Ready, Failed, Discarded };

  std::mutex mutex;
  Status status = Status::Pending;
  bool discardRequested = false;
  bool abandoned = false;
  bool associated = false;
  // READY: its own value, or one it shares (of a future it was associated
  // with, or readyShared()'s), handed along without a copy.
  std::optional<T> value;
  std::shared_ptr<const T> shared;
  std::optional<Error> error;

  const T& valueRef() const { return shared ? *shared : *value; }

  CallbackList<const Future<T>&> onAny;
  CallbackList<> onDiscard;
  CallbackList<> onAbandoned;
};

struct FutureAccess {
  template <typename T>
  static Future<T> make(std::shared_ptr<FutureState<T>> state) {
    return Future<T>(std::move(state));
  }
  template <typename T>
  static const std::shared_ptr<FutureState<T>>& state(const Future<T>& future) {
    return future.state_;
  }
};

[[noreturn]] void futurePreconditionFailed(const char* what);

// The value of READY `state` as a shared pointer that keeps it alive (read
// after a locked status check: the value is written once, before).
template <typename T>
std::shared_ptr<const T> sharedValueOf(const std::shared_ptr<FutureState<T>>& state) {
  return state->shared ? state->shared : std::shared_ptr<const T>(state, &*state->value);
}

// Completes `state` (unless it is no longer pending) and runs its callbacks
// outside the lock. `assign` fills in the value or error under the lock.
template <typename T, typename Assign>
bool complete(const std::shared_ptr<FutureState<T>>& state, typename FutureState<T>::Status status, Assign&& assign) {
  CallbackList<const Future<T>&> any;
  CallbackList<> dropped1, dropped2;
  {
    std::lock_guard lock(state->mutex);
    if (state->status != FutureState<T>::Status::Pending) return false;
    assign(*state);
    state->status = status;
    state->abandoned = false;
    any.swap(state->onAny);
    dropped1.swap(state->onDiscard);
    dropped2.swap(state->onAbandoned);
  }
  Future<T> future = FutureAccess::make(state);
  any.runAll(future);
  return true;
}

template <typename T>
void abandon(const std::shared_ptr<FutureState<T>>& state) {
  CallbackList<const Future<T>&> any;
  CallbackList<> discard, abandoned;
  {
    std::lock_guard lock(state->mutex);
    if (state->status != FutureState<T>::Status::Pending || state->abandoned) return;
    state->abandoned = true;
    abandoned.swap(state->onAbandoned);
    any.swap(state->onAny);
    discard.swap(state->onDiscard);
  }
  abandoned.runAll();
  // Dropping the onAny callbacks releases the promises they hold (of then()
  // results and the like), which abandons those futures in turn.
  any.clear();
}

inline Error exceptionError(std::exception_ptr eptr) {
  try {
    std::rethrow_exception(eptr);
  } catch (const std::exception& e) {
    return Error(ErrorKind::Internal, std::string("Unexpected exception: ") + e.what());
  } catch (...) {
    return Error(ErrorKind::Internal, "Unexpected exception of unknown type");
  }
}

// Runs `f(args...)` and completes `promise` with its result: void -> Nothing,
// Future<X> -> associate, Try<X> -> value or error, X -> value. An exception
// fails the promise. An rvalue `f` is called as one (a continuation called
// once: defer's then moves what it holds into its dispatch).
template <typename X, typename F, typename... A>
void invokeInto(Promise<X>& promise, F&& f, A&&... args) {
  using R = std::decay_t<std::invoke_result_t<F, A...>>;
  try {
    if constexpr (std::is_void_v<R>) {
      std::invoke(std::forward<F>(f), std::forward<A>(args)...);
      promise.set(Nothing{});
    } else if constexpr (IsFuture<R>::value) {
      promise.associate(std::invoke(std::forward<F>(f), std::forward<A>(args)...));
    } else if constexpr (IsTry<R>::value) {
      R result = std::invoke(std::forward<F>(f), std::forward<A>(args)...);
      if (result.isError()) {
        promise.fail(result.error());
      } else {
        promise.set(std::move(result).get());
      }
    } else {
      promise.set(std::invoke(std::forward<F>(f), std::forward<A>(args)...));
    }
  } catch (...) {
    promise.fail(exceptionError(std::current_exception()));
  }
}

// Calls f(value) when that is well-formed, f() otherwise.
template <typename F, typename T>
decltype(auto) invokeWithValue(F& f, const T& value) {
  if constexpr (std::is_invocable_v<F&, const T&>) {
    return std::invoke(f, value);
  } else {
    return std::invoke(f);
  }
}

// A discard request on `result` becomes a discard request on `source`.
template <typename X, typename T>
void propagateDiscard(const Future<X>& result, const Future<T>& source);

}  // namespace detail

// ---- Future ------------------------------------------------------------------

template <typename T>
Future<T>::Future() : state_(std::make_shared<detail::FutureState<T>>()) {
  state_->abandoned = true;
}

template <typename T>
Future<T>::Future(const T& value) : state_(std::make_shared<detail::FutureState<T>>()) {
  state_->value.emplace(value);
  state_->status = detail::FutureState<T>::Status::Ready;
}

template <typename T>
Future<T>::Future(T&& value) : state_(std::make_shared<detail::FutureState<T>>()) {
  state_->value.emplace(std::move(value));
  state_->status = detail::FutureState<T>::Status::Ready;
}

template <typename T>
Future<T>::Future(const Error& error) : state_(std::make_shared<detail::FutureState<T>>()) {
  state_->error.emplace(error);
  state_->status = detail::FutureState<T>::Status::Failed;
}

template <typename T>
Future<T>::Future(Error&& error) : state_(std::make_shared<detail::FutureState<T>>()) {
  state_->error.emplace(std::move(error));
  state_->status = detail::FutureState<T>::Status::Failed;
}

template <typename T>
Future<T>::Future(const Try<T>& t) : Future(t.isSome() ? Future<T>(t.get()) : Future<T>(t.error())) {}

template <typename T>
bool Future<T>::isPending() const {
  std::lock_guard lock(state_->mutex);
  return state_->status == detail::FutureState<T>::Status::Pending;
}

template <typename T>
bool Future<T>::isReady() const {
  std::lock_guard lock(state_->mutex);
  return state_->status == detail::FutureState<T>::Status::Ready;
}

template <typename T>
bool Future<T>::isFailed() const {
  std::lock_guard lock(state_->mutex);
  return state_->status == detail::FutureState<T>::Status::Failed;
}

template <typename T>
bool Future<T>::isDiscarded() const {
  std::lock_guard lock(state_->mutex);
  return state_->status == detail::FutureState<T>::Status::Discarded;
}

template <typename T>
bool Future<T>::isAbandoned() const {
  std::lock_guard lock(state_->mutex);
  return state_->status == detail::FutureState<T>::Status::Pending && state_->abandoned;
}

template <typename T>
bool Future<T>::hasDiscard() const {
  std::lock_guard lock(state_->mutex);
  return state_->discardRequested;
}

// The value and the error are written once, before the status leaves
// Pending, and never again: reading them without the lock after a locked
// status check is safe.
template <typename T>
const T& Future<T>::get() const {
  if (!isReady()) detail::futurePreconditionFailed("Future::get() on a future that is not READY");
  return state_->valueRef();
}

template <typename T>
std::shared_ptr<const T> Future<T>::share() const {
  if (!isReady()) detail::futurePreconditionFailed("Future::share() on a future that is not READY");
  return detail::sharedValueOf(state_);
}

template <typename T>
const Error& Future<T>::failure() const {
  if (!isFailed()) {
    detail::futurePreconditionFailed("Future::failure() on a future that is not FAILED");
  }
  return *state_->error;
}

template <typename T>
bool Future<T>::waitFor(std::chrono::nanoseconds timeout) const {
  struct Waiter {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
  };
  auto waiter = std::make_shared<Waiter>();
  auto wake = [waiter] {
    std::lock_guard lock(waiter->mutex);
    waiter->done = true;
    waiter->cv.notify_all();
  };
  onAny(wake);
  onAbandoned(wake);
  std::unique_lock lock(waiter->mutex);
  waiter->cv.wait_for(lock, timeout, [&] { return waiter->done; });
  lock.unlock();
  return !isPending();
}

template <typename T>
bool Future<T>::discard() const {
  detail::CallbackList<> callbacks;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->status != detail::FutureState<T>::Status::Pending || state_->discardRequested) {
      return false;
    }
    state_->discardRequested = true;
    callbacks.swap(state_->onDiscard);
  }
  callbacks.runAll();
  return true;
}

template <typename T>
template <typename F>
const Future<T>& Future<T>::onAny(F&& f) const {
  detail::Callback<const Future<T>&> callback;
  if constexpr (std::is_invocable_v<F&, const Future<T>&>) {
    callback = detail::Callback<const Future<T>&>(std::forward<F>(f));
  } else {
    callback = detail::Callback<const Future<T>&>([f = std::forward<F>(f)](const Future<T>&) mutable { f(); });
  }
  {
    std::lock_guard lock(state_->mutex);
    if (state_->status == detail::FutureState<T>::Status::Pending) {
      // An abandoned future never completes: drop the callback (and what it
      // holds) instead of keeping it forever.
      if (!state_->abandoned) state_->onAny.push(std::move(callback));
      return *this;
    }
  }
  callback(*this);
  return *this;
}

template <typename T>
template <typename F>
const Future<T>& Future<T>::onReady(F&& f) const {
  return onAny([f = std::forward<F>(f)](const Future<T>& future) mutable {
    if (future.isReady()) detail::invokeWithValue(f, future.get());
  });
}

template <typename T>
template <typename F>
const Future<T>& Future<T>::onFailed(F&& f) const {
  return onAny([f = std::forward<F>(f)](const Future<T>& future) mutable {
    if (future.isFailed()) detail::invokeWithValue(f, future.failure());
  });
}

template <typename T>
template <typename F>
const Future<T>& Future<T>::onDiscarded(F&& f) const {
  return onAny([f = std::forward<F>(f)](const Future<T>& future) mutable {
    if (future.isDiscarded()) f();
  });
}

template <typename T>
template <typename F>
const Future<T>& Future<T>::onDiscard(F&& f) const {
  detail::Callback<> callback(std::forward<F>(f));
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->discardRequested) {
      if (state_->status == detail::FutureState<T>::Status::Pending) {
        state_->onDiscard.push(std::move(callback));
      }
      return *this;
    }
  }
  callback();
  return *this;
}

template <typename T>
template <typename F>
const Future<T>& Future<T>::onAbandoned(F&& f) const {
  detail::Callback<> callback(std::forward<F>(f));
  {
    std::lock_guard lock(state_->mutex);
    if (state_->status != detail::FutureState<T>::Status::Pending) return *this;
    if (!state_->abandoned) {
      state_->onAbandoned.push(std::move(callback));
      return *this;
    }
  }
  callback();
  return *this;
}

template <typename T>
template <typename F>
Future<UnwrapT<typename detail::ContinuationResult<F, T>::type>> Future<T>::then(F&& f) const {
  using X = UnwrapT<typename detail::ContinuationResult<F, T>::type>;
  auto promise = std::make_shared<Promise<X>>();
  Future<X> result = promise->future();
  detail::propagateDiscard(result, *this);
  onAny([promise, f = std::forward<F>(f)](const Future<T>& source) mutable {
    if (source.isReady()) {
      if (promise->future().hasDiscard()) {
        promise->discard();
      } else if constexpr (std::is_invocable_v<F&, const T&>) {
        detail::invokeInto(*promise, std::move(f), source.get());  // called once
      } else {
        detail::invokeInto(*promise, std::move(f));
      }
    } else if (source.isFailed()) {
      promise->fail(source.failure());
    } else {
      promise->discard();
    }
  });
  return result;
}

template <typename T>
template <typename F>
Future<T> Future<T>::repair(F&& f) const {
  auto promise = std::make_shared<Promise<T>>();
  Future<T> result = promise->future();
  detail::propagateDiscard(result, *this);
  onAny([promise, f = std::forward<F>(f)](const Future<T>& source) mutable {
    if (source.isFailed()) {
      detail::invokeInto(*promise, std::move(f), source);  // called once
    } else {
      promise->associate(source);
    }
  });
  return result;
}

template <typename T>
template <typename F>
Future<T> Future<T>::recover(F&& f) const {
  auto promise = std::make_shared<Promise<T>>();
  Future<T> result = promise->future();
  detail::propagateDiscard(result, *this);
  auto shared = std::make_shared<std::decay_t<F>>(std::forward<F>(f));
  onAny([promise, shared](const Future<T>& source) {
    if (source.isReady()) {
      promise->associate(source);
    } else {
      detail::invokeInto(*promise, *shared, source);
    }
  });
  // Runs before the onAny callback above is dropped (see detail::abandon).
  std::weak_ptr<detail::FutureState<T>> weak = state_;
  onAbandoned([promise, shared, weak] {
    if (auto state = weak.lock()) {
      detail::invokeInto(*promise, *shared, detail::FutureAccess::make(state));
    }
  });
  return result;
}

// ---- Promise -----------------------------------------------------------------

template <typename T>
Promise<T>::Promise() : state_(std::make_shared<detail::FutureState<T>>()) {}

template <typename T>
Promise<T>::~Promise() {
  if (!state_) return;
  bool associated;
  {
    std::lock_guard lock(state_->mutex);
    associated = state_->associated;
  }
  if (!associated) detail::abandon(state_);
}

template <typename T>
Promise<T>::Promise(Promise&& other) noexcept : state_(std::move(other.state_)) {}

template <typename T>
Promise<T>& Promise<T>::operator=(Promise&& other) noexcept {
  if (this != &other) {
    Promise old(std::move(*this));
    state_ = std::move(other.state_);
  }
  return *this;
}

template <typename T>
Future<T> Promise<T>::future() const {
  return Future<T>(state_);
}

namespace detail {
template <typename T>
bool isAssociated(const std::shared_ptr<FutureState<T>>& state) {
  std::lock_guard lock(state->mutex);
  return state->associated;
}
}  // namespace detail

template <typename T>
bool Promise<T>::set(const T& value) {
  if (detail::isAssociated(state_)) return false;
  return detail::complete(state_, detail::FutureState<T>::Status::Ready,
                          [&](detail::FutureState<T>& s) { s.value.emplace(value); });
}

template <typename T>
bool Promise<T>::set(T&& value) {
  if (detail::isAssociated(state_)) return false;
  return detail::complete(state_, detail::FutureState<T>::Status::Ready,
                          [&](detail::FutureState<T>& s) { s.value.emplace(std::move(value)); });
}

template <typename T>
bool Promise<T>::set(std::shared_ptr<const T> value) {
  if (detail::isAssociated(state_)) return false;
  return detail::complete(state_, detail::FutureState<T>::Status::Ready,
                          [&](detail::FutureState<T>& s) { s.shared = std::move(value); });
}

template <typename T>
bool Promise<T>::fail(const Error& error) {
  if (detail::isAssociated(state_)) return false;
  return detail::complete(state_, detail::FutureState<T>::Status::Failed,
                          [&](detail::FutureState<T>& s) { s.error.emplace(error); });
}

template <typename T>
bool Promise<T>::discard() {
  if (detail::isAssociated(state_)) return false;
  return detail::complete(state_, detail::FutureState<T>::Status::Discarded, [](detail::FutureState<T>&) {});
}

template <typename T>
bool Promise<T>::associate(const Future<T>& other) {
  bool discardRequested;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->status != detail::FutureState<T>::Status::Pending || state_->associated) {
      return false;
    }
    state_->associated = true;
    discardRequested = state_->discardRequested;
  }
  using Status = typename detail::FutureState<T>::Status;
  if (other.state_ == state_) return true;  // associating with itself: stays pending
  if (discardRequested) {
    other.discard();
  } else {
    detail::propagateDiscard(Future<T>(state_), other);
  }
  auto ours = state_;
  other.onAny([ours](const Future<T>& source) {
    if (source.isReady()) {
      auto value = source.share();
      detail::complete(ours, Status::Ready, [&](detail::FutureState<T>& s) { s.shared = std::move(value); });
    } else if (source.isFailed()) {
      detail::complete(ours, Status::Failed, [&](detail::FutureState<T>& s) { s.error.emplace(source.failure()); });
    } else {
      detail::complete(ours, Status::Discarded, [](detail::FutureState<T>&) {});
    }
  });
  other.onAbandoned([ours] { detail::abandon(ours); });
  return true;
}

// ---- free functions ----------------------------------------------------------------

namespace detail {
template <typename X, typename T>
void propagateDiscard(const Future<X>& result, const Future<T>& source) {
  std::weak_ptr<FutureState<T>> weak = FutureAccess::state(source);
  result.onDiscard([weak] {
    if (auto state = weak.lock()) FutureAccess::make(state).discard();
  });
}
}  // namespace detail

template <typename T>
Future<T> readyShared(std::shared_ptr<const T> value) {
  Promise<T> promise;
  promise.set(std::move(value));
  return promise.future();
}

template <typename T>
Future<T> undiscardable(const Future<T>& future) {
  auto promise = std::make_shared<Promise<T>>();
  Future<T> result = promise->future();
  future.onAny([promise](const Future<T>& source) {
    if (source.isReady()) {
      promise->set(source.share());
    } else if (source.isFailed()) {
      promise->fail(source.failure());
    } else {
      promise->discard();
    }
  });
  return result;
}

}  // namespace prov::actors
