#pragma once

// async: run blocking work (file-system walks, extraction, fsync) on the
// runtime's blocking pool, never on a strand, and get its result as a future.
//
//   Future<Nothing> removed = async(runtime, [dir] { return removeTree(dir); });
//
// f() may return R, Try<R>, Future<R> or void (Future<Nothing>). A discard
// requested before f starts makes the result DISCARDED without running f;
// once f runs, it runs to the end. When the runtime is shutting down the
// result FAILS with ErrorKind::Unavailable and f is not run. Continuations on
// the result run on the blocking thread that completed it unless deferred.
//
// asyncWaiting: the same, on the runtime's waiting pool, for work that
// sleeps in the kernel rather than runs, many at once: an unmount that waits
// for its file system's sync and journal commit (runtime.hpp).

#include <memory>
#include <type_traits>
#include <utility>

#include "actors/future.hpp"
#include "actors/runtime.hpp"

namespace prov::actors {

namespace detail {

template <typename F>
auto asyncOn(Runtime& runtime, Pool pool, F&& f) {
  using X = UnwrapT<std::invoke_result_t<std::decay_t<F>&>>;
  auto promise = std::make_shared<Promise<X>>();
  Future<X> future = promise->future();
  auto task = [promise, f = std::forward<F>(f)]() mutable {
    if (promise->future().hasDiscard()) {
      promise->discard();
      return;
    }
    invokeInto(*promise, f);
  };
  const bool submitted = submitBlocking(runtime, std::move(task), pool);
  if (!submitted) {
    promise->fail(Error(ErrorKind::Unavailable, "Failed to run blocking work: the runtime is shutting down"));
  }
  return future;
}

}  // namespace detail

template <typename F>
auto async(Runtime& runtime, F&& f) {
  return detail::asyncOn(runtime, detail::Pool::Blocking, std::forward<F>(f));
}

template <typename F>
auto asyncWaiting(Runtime& runtime, F&& f) {
  return detail::asyncOn(runtime, detail::Pool::Waiting, std::forward<F>(f));
}

}  // namespace prov::actors
