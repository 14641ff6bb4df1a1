#pragma once

// collect and await: wait for many futures.
//
// collect(vector<Future<T>>) -> Future<vector<T>>, collect(f1, f2, ...) ->
// Future<tuple<T1, T2, ...>>: READY with the values in input order once all
// are READY. FAILS as soon as one input fails (with that input's error) or is
// discarded (ErrorKind::Cancelled), and then requests a discard of the inputs
// still pending, since nobody will read them. Abandoned if an input is
// abandoned.
//
// await(vector<Future<T>>) -> Future<vector<Future<T>>>, await(f1, f2, ...)
// -> Future<tuple<Future<T1>, ...>>: READY once every input is READY, FAILED,
// DISCARDED or abandoned. Never fails.
//
// Discarding the result of either requests a discard of every input. Neither
// holds a lock while it runs callbacks; both are thread-safe.

#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "actors/future.hpp"

namespace prov::actors {

namespace detail {

template <typename T>
struct Collector {
  std::mutex mutex;
  std::vector<std::optional<T>> values;
  std::size_t remaining = 0;
  std::optional<Promise<std::vector<T>>> promise;  // empty once decided
  std::vector<std::weak_ptr<FutureState<T>>> inputs;

  std::optional<Promise<std::vector<T>>> takePromise() {
    std::optional<Promise<std::vector<T>>> taken = std::move(promise);
    promise.reset();
    return taken;
  }

  void discardInputs() {
    for (auto& weak : inputs) {
      if (auto state = weak.lock()) FutureAccess::make(state).discard();
    }
  }
};

// READY when `future` is no longer pending or is abandoned; a discard request
// on it is passed to `future`.
template <typename T>
Future<Nothing> completion(const Future<T>& future) {
  auto promise = std::make_shared<Promise<Nothing>>();
  Future<Nothing> done = promise->future();
  propagateDiscard(done, future);
  future.onAny([promise] { promise->set(Nothing{}); });
  future.onAbandoned([promise] { promise->set(Nothing{}); });
  return done;
}

}  // namespace detail

template <typename T>
Future<std::vector<T>> collect(const std::vector<Future<T>>& futures) {
  auto collector = std::make_shared<detail::Collector<T>>();
  collector->promise.emplace();
  Future<std::vector<T>> result = collector->promise->future();
  if (futures.empty()) {
    collector->promise->set(std::vector<T>{});
    return result;
  }
  collector->values.resize(futures.size());
  collector->remaining = futures.size();
  for (const auto& future : futures) {
    collector->inputs.push_back(detail::FutureAccess::state(future));
  }
  std::weak_ptr<detail::Collector<T>> weak = collector;
  result.onDiscard([weak] {
    if (auto c = weak.lock()) c->discardInputs();
  });

  for (std::size_t i = 0; i < futures.size(); ++i) {
    futures[i].onAny([collector, i](const Future<T>& input) {
      std::optional<Promise<std::vector<T>>> decided;
      std::vector<T> values;
      {
        std::lock_guard lock(collector->mutex);
        if (!collector->promise) return;
        if (input.isReady()) {
          collector->values[i].emplace(input.get());
          if (--collector->remaining != 0) return;
          values.reserve(collector->values.size());
          for (auto& value : collector->values) values.push_back(std::move(*value));
        }
        decided = collector->takePromise();
      }
      if (input.isReady()) {
        decided->set(std::move(values));
        return;
      }
      decided->fail(input.isFailed() ? input.failure()
                                     : Error(ErrorKind::Cancelled, "Collect failed: an input was discarded"));
      collector->discardInputs();
    });
    futures[i].onAbandoned([collector] {
      std::optional<Promise<std::vector<T>>> dropped;  // destroying it abandons the result
      std::lock_guard lock(collector->mutex);
      dropped = collector->takePromise();
    });
  }
  return result;
}

template <typename... T>
Future<std::tuple<T...>> collect(const Future<T>&... futures) {
  std::vector<Future<Nothing>> all{futures.then([] { return Nothing{}; })...};
  return collect(all).then([futures...] { return std::make_tuple(futures.get()...); });
}

template <typename T>
Future<std::vector<Future<T>>> await(const std::vector<Future<T>>& futures) {
  std::vector<Future<Nothing>> all;
  all.reserve(futures.size());
  for (const auto& future : futures) all.push_back(detail::completion(future));
  return collect(all).then([futures] { return futures; });
}

template <typename... T>
Future<std::tuple<Future<T>...>> await(const Future<T>&... futures) {
  std::vector<Future<Nothing>> all{detail::completion(futures)...};
  return collect(all).then([futures...] { return std::make_tuple(futures...); });
}

}  // namespace prov::actors
