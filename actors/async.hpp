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

#include <memory>
#include <type_traits>

#include "actors/future.hpp"
#include "actors/runtime.hpp"

namespace prov::actors {

template <typename F>
auto async(Runtime& runtime, F&& f) {
  using X = UnwrapT<std::invoke_result_t<std::decay_t<F>&>>;
  auto promise = std::make_shared<Promise<X>>();
  Future<X> future = promise->future();
  const bool submitted = detail::submitBlocking(runtime, [promise, f = std::forward<F>(f)]() mutable {
    if (promise->future().hasDiscard()) {
      promise->discard();
      return;
    }
    detail::invokeInto(*promise, f);
  });
  if (!submitted) {
    promise->fail(Error(ErrorKind::Unavailable, "Failed to run blocking work: the runtime is shutting down"));
  }
  return future;
}

}  // namespace prov::actors
