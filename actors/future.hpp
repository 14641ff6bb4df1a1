#pragma once

// Future<T> and Promise<T>: the values that asynchronous calls return.
//
// States. A future is PENDING until its promise completes it as READY (with a
// value), FAILED (with an Error) or DISCARDED. It completes at most once. A
// pending future whose promise was destroyed without completing it, and
// without being associated with another future, is *abandoned*: it stays
// pending forever, isAbandoned() is true, and onAbandoned callbacks run.
// Abandonment travels downstream: the result of then() on an abandoned future
// is abandoned too.
//
// Discard is a request, not a state change. discard() marks the future
// (hasDiscard() becomes true) and runs its onDiscard callbacks; the producer
// decides whether to stop, and if it does it calls Promise::discard(), which
// makes the future DISCARDED. Discard requests travel upstream: discarding the
// result of then(), repair(), recover() or after() requests a discard of the
// source; discarding a future associated with another (Promise::associate, a
// dispatched method returning a future) requests a discard of that other one.
// undiscardable(f) cuts this propagation.
//
// WHERE CALLBACKS RUN. A callback (onAny, onReady, onFailed, onDiscarded,
// onDiscard, onAbandoned, and the continuations of then/repair/recover) runs
// synchronously:
//   - on the thread that completes (or discards, or abandons) the future, or
//   - on the thread that adds the callback, immediately, if the future has
//     already reached the state the callback waits for.
// It never runs under a lock of the future. A continuation that touches an
// actor's state must therefore be wrapped with defer(pid, ...) (defer.hpp),
// which turns it into a dispatch onto that actor's strand. Continuations of
// after() run on a runtime worker thread when the timer fires first.
//
// Exceptions thrown by a continuation are caught and turn the result into a
// failed future (ErrorKind::Internal); they never propagate to the completer.
//
// Thread safety: all members of Future and Promise may be called from any
// thread. A Future is a cheap, copyable handle to shared state.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "actors/error.hpp"

namespace prov::actors {

class Clock;
template <typename T>
class Future;
template <typename T>
class Promise;

namespace detail {
template <typename T>
struct FutureState;
struct FutureAccess;

template <typename R>
struct Unwrap {
  using type = R;
};
template <typename X>
struct Unwrap<Future<X>> {
  using type = X;
};
template <typename X>
struct Unwrap<Try<X>> {
  using type = X;
};
template <>
struct Unwrap<void> {
  using type = Nothing;
};

template <typename R>
struct IsFuture : std::false_type {};
template <typename X>
struct IsFuture<Future<X>> : std::true_type {};
template <typename R>
struct IsTry : std::false_type {};
template <typename X>
struct IsTry<Try<X>> : std::true_type {};

// The result type of a continuation F given the value T: F(const T&) when
// that is callable, F() otherwise.
template <typename F, typename T>
struct ContinuationResult {
  using type = typename std::conditional_t<std::is_invocable_v<F&, const T&>, std::invoke_result<F&, const T&>,
                                           std::invoke_result<F&>>::type;
};
}  // namespace detail

// The value type of the future that a continuation returning R yields:
// void -> Nothing, Future<X> -> X, Try<X> -> X, X -> X.
template <typename R>
using UnwrapT = typename detail::Unwrap<std::decay_t<R>>::type;

template <typename T>
class Future {
 public:
  using value_type = T;

  // An abandoned future: it never completes.
  Future();
  Future(const T& value);      // NOLINT: READY, implicit by design
  Future(T&& value);           // NOLINT
  Future(const Error& error);  // NOLINT: FAILED
  Future(Error&& error);       // NOLINT
  Future(const Try<T>& t);     // NOLINT: READY or FAILED

  bool isPending() const;
  bool isReady() const;
  bool isFailed() const;
  bool isDiscarded() const;
  // Pending, and no one can complete it any more.
  bool isAbandoned() const;
  // A discard was requested (whatever the state).
  bool hasDiscard() const;

  // Preconditions: isReady() for get() and ->, isFailed() for failure();
  // breaking one aborts the process with a message.
  const T& get() const;
  const T* operator->() const { return &get(); }
  // The value, shared rather than copied: the pointer keeps it alive. Same
  // precondition as get().
  std::shared_ptr<const T> share() const;
  const Error& failure() const;

  // Blocks the calling thread until the future leaves PENDING or is
  // abandoned, or `timeout` passes; true when it is no longer pending. For
  // tests and main(); never call it on a runtime thread (it would block a
  // strand).
  bool waitFor(std::chrono::nanoseconds timeout) const;

  // Requests a discard (see above). Returns false when one was already
  // requested or the future is no longer pending.
  bool discard() const;

  // Callbacks (see "where callbacks run"). Each returns *this for chaining.
  // onAny: f(const Future<T>&) or f(), when READY, FAILED or DISCARDED.
  template <typename F>
  const Future& onAny(F&& f) const;
  // onReady: f(const T&) or f().
  template <typename F>
  const Future& onReady(F&& f) const;
  // onFailed: f(const Error&) or f().
  template <typename F>
  const Future& onFailed(F&& f) const;
  template <typename F>
  const Future& onDiscarded(F&& f) const;
  // onDiscard: when a discard is requested (immediately if it already was).
  template <typename F>
  const Future& onDiscard(F&& f) const;
  template <typename F>
  const Future& onAbandoned(F&& f) const;

  // then: when READY, f(const T&) or f() gives X, Future<X>, Try<X> or void
  // (-> Nothing). FAILED and DISCARDED pass through. The result is DISCARDED,
  // without calling f, when a discard of the result was requested before the
  // source became ready.
  template <typename F>
  Future<UnwrapT<typename detail::ContinuationResult<F, T>::type>> then(F&& f) const;

  // repair: when FAILED, f(const Future<T>&) gives T or Future<T>.
  template <typename F>
  Future<T> repair(F&& f) const;

  // recover: when FAILED, DISCARDED or abandoned, f(const Future<T>&) gives T
  // or Future<T>.
  template <typename F>
  Future<T> recover(F&& f) const;

  // after: if this is still pending after `duration` of `clock` time, the
  // result follows f(*this), which gives T or Future<T> (typically: discard
  // *this and fail). Otherwise it follows *this. `clock` must outlive the
  // timer (the Runtime's clock does).
  template <typename F>
  Future<T> after(Clock& clock, std::chrono::nanoseconds duration, F&& f) const;

  bool operator==(const Future& other) const { return state_ == other.state_; }

 private:
  template <typename U>
  friend class Future;
  template <typename U>
  friend class Promise;
  friend struct detail::FutureAccess;
  explicit Future(std::shared_ptr<detail::FutureState<T>> state) : state_(std::move(state)) {}

  std::shared_ptr<detail::FutureState<T>> state_;
};

template <typename T>
class Promise {
 public:
  Promise();
  // Abandons the future when it is still pending and not associated.
  ~Promise();
  Promise(Promise&& other) noexcept;
  Promise& operator=(Promise&& other) noexcept;
  Promise(const Promise&) = delete;
  Promise& operator=(const Promise&) = delete;

  Future<T> future() const;

  // Each returns false, and changes nothing, when the future is no longer
  // pending or the promise is associated.
  bool set(const T& value);
  bool set(T&& value);
  // READY with a value shared, not copied (non-null).
  bool set(std::shared_ptr<const T> value);
  bool fail(const Error& error);
  bool discard();

  // The future follows `other`: it completes as `other` does, is abandoned
  // when `other` is, and discard requests on it go to `other` (at once if one
  // was already requested). At most one association; returns false when the
  // promise is already associated or completed.
  bool associate(const Future<T>& other);
  bool set(const Future<T>& other) { return associate(other); }

 private:
  std::shared_ptr<detail::FutureState<T>> state_;
};

// A future that follows `future` but does not pass discard requests to it.
// Used where several callers share one piece of work: one caller giving up
// must not cancel it for the others.
template <typename T>
Future<T> undiscardable(const Future<T>& future);

// A READY future sharing `value` (non-null) instead of holding a copy: one
// value handed out to many, or along a chain, without copying it each time.
template <typename T>
Future<T> readyShared(std::shared_ptr<const T> value);

}  // namespace prov::actors

#include "actors/impl/future.hpp"
