#pragma once

// loop: asynchronous iteration on a process, without stack growth.
//
//   Future<int> sum = loop(self(),
//       [&]() { return readChunk(); },                    // T or Future<T>
//       [&](const Chunk& c) -> ControlFlow<int> {         // or Future<ControlFlow<V>>
//         if (c.empty()) return Break(total_);
//         total_ += c.size();
//         return Continue();
//       });
//
// iterate and body run on pid's strand, so they may touch its state. While
// their futures are already READY the loop iterates in place; when one is
// pending, the loop resumes from a fresh dispatch once it completes, so a
// million iterations use constant stack. A failed or discarded iterate/body
// future fails or discards the loop. Discarding the loop's future requests a
// discard of the future the loop is waiting on, and stops the loop at its next
// step (DISCARDED). If pid terminates, the loop fails (ErrorKind::Unavailable).

#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "actors/dispatch.hpp"
#include "actors/future.hpp"

namespace prov::actors {

struct Continue {};

template <typename V>
class ControlFlow {
 public:
  using value_type = V;
  ControlFlow(Continue) {}  // NOLINT: implicit by design
  explicit ControlFlow(V value) : value_(std::move(value)) {}
  bool isBreak() const { return value_.has_value(); }
  const V& value() const { return *value_; }

 private:
  std::optional<V> value_;
};

template <typename V>
ControlFlow<std::decay_t<V>> Break(V&& value) {
  return ControlFlow<std::decay_t<V>>(std::forward<V>(value));
}

inline ControlFlow<Nothing> Break() { return ControlFlow<Nothing>(Nothing{}); }

namespace detail {

// f(args...) as a future, whatever f returns; an exception becomes a failure.
template <typename F, typename... A>
auto callAsFuture(F& f, A&&... args) {
  using X = UnwrapT<std::invoke_result_t<F&, A...>>;
  Promise<X> promise;
  Future<X> future = promise.future();
  invokeInto(promise, f, std::forward<A>(args)...);
  return future;
}

template <typename P, typename I, typename V, typename Iterate, typename Body>
class Loop : public std::enable_shared_from_this<Loop<P, I, V, Iterate, Body>> {
 public:
  Loop(PID<P> pid, Iterate iterate, Body body)
      : pid_(std::move(pid)), iterate_(std::move(iterate)), body_(std::move(body)) {}

  Future<V> future() const { return promise_.future(); }

  void start() {
    resumeOn([self = this->shared_from_this()] { self->run(); });
  }

  void discardInflight() {
    std::function<void()> discard;
    {
      std::lock_guard lock(mutex_);
      discard = inflight_;
    }
    if (discard) discard();
  }

 private:
  void run() {
    for (;;) {
      if (promise_.future().hasDiscard()) {
        promise_.discard();
        return;
      }
      if (!stepIterate(callAsFuture(iterate_))) return;
    }
  }

  // Each step returns true when the loop may go on in place.
  // Pending is tested first: a future may complete between two queries,
  // and only a completed one answers the same way twice.
  bool stepIterate(const Future<I>& next) {
    if (next.isPending()) {
      waitFor(next, [](const std::shared_ptr<Loop>& self, const Future<I>& f) {
        if (self->stepIterate(f)) self->run();
      });
      return false;
    }
    if (next.isReady()) return stepBody(callAsFuture(body_, next.get()));
    finishUnready(next);
    return false;
  }

  bool stepBody(const Future<ControlFlow<V>>& flow) {
    if (flow.isPending()) {
      waitFor(flow, [](const std::shared_ptr<Loop>& self, const Future<ControlFlow<V>>& f) {
        if (self->stepBody(f)) self->run();
      });
      return false;
    }
    if (flow.isReady()) {
      if (!flow.get().isBreak()) return true;
      promise_.set(flow.get().value());
      return false;
    }
    finishUnready(flow);
    return false;
  }

  template <typename X>
  void finishUnready(const Future<X>& future) {
    if (future.isFailed()) {
      promise_.fail(future.failure());
    } else {
      promise_.discard();
    }
  }

  // Resumes with `step` on pid's strand once `future` completes.
  template <typename X, typename Step>
  void waitFor(const Future<X>& future, Step step) {
    {
      std::lock_guard lock(mutex_);
      inflight_ = [future] { future.discard(); };
    }
    if (promise_.future().hasDiscard()) future.discard();
    future.onAny([self = this->shared_from_this(), step](const Future<X>& completed) {
      {
        std::lock_guard lock(self->mutex_);
        self->inflight_ = nullptr;
      }
      self->resumeOn([self, step, completed] { step(self, completed); });
    });
  }

  template <typename F>
  void resumeOn(F&& f) {
    auto self = this->shared_from_this();
    dispatch(pid_, std::forward<F>(f)).onFailed([self](const Error& error) { self->promise_.fail(error); });
  }

  PID<P> pid_;
  Iterate iterate_;
  Body body_;
  Promise<V> promise_;
  std::mutex mutex_;
  std::function<void()> inflight_;  // discards what the loop waits on
};

}  // namespace detail

template <typename P, typename Iterate, typename Body>
auto loop(const PID<P>& pid, Iterate&& iterate, Body&& body) {
  using I = UnwrapT<std::invoke_result_t<std::decay_t<Iterate>&>>;
  using Flow = UnwrapT<std::invoke_result_t<std::decay_t<Body>&, const I&>>;
  using V = typename Flow::value_type;
  using L = detail::Loop<P, I, V, std::decay_t<Iterate>, std::decay_t<Body>>;
  auto state = std::make_shared<L>(pid, std::forward<Iterate>(iterate), std::forward<Body>(body));
  Future<V> result = state->future();
  std::weak_ptr<L> weak = state;
  result.onDiscard([weak] {
    if (auto s = weak.lock()) s->discardInflight();
  });
  state->start();
  return result;
}

}  // namespace prov::actors
