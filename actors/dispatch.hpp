#pragma once

// dispatch: call a method of a process (or a callable) on that process's
// strand, and get the result as a future.
//
//   Future<int> f = dispatch(pid, &Counter::add, 2);
//   Future<Nothing> g = dispatch(pid, [=] { ... });   // runs on pid's strand
//
// A method (or callable) returning R gives Future<R>; one returning Future<R>
// gives a Future<R> associated with it, so a discard request on the result
// reaches the method's own future; one returning Try<R> gives Future<R>; one
// returning void gives Future<Nothing>, READY once it has run. Arguments are
// copied (decayed) at the call and moved into the method when it runs.
//
// When the process is not running (never spawned, terminated, or terminated
// before the event ran) the future FAILS with ErrorKind::Unavailable; the
// method is not called. It never crashes or hangs.

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>

#include "actors/future.hpp"
#include "actors/process.hpp"

namespace prov::actors {

namespace detail {

template <typename X, typename Call>
Future<X> dispatchCall(const std::shared_ptr<ProcessContext>& context, Call call) {
  auto promise = std::make_shared<Promise<X>>();
  Future<X> future = promise->future();
  const bool posted = post(context, [promise, context, call = std::move(call)](bool running) mutable {
    if (!running) {
      promise->fail(notRunning(contextId(context)));
      return;
    }
    invokeInto(*promise, call);
  });
  if (!posted) promise->fail(notRunning(contextId(context)));
  return future;
}

}  // namespace detail

// clang-format 14 garbles requires-clauses:
// clang-format off
// dispatch(pid, &T::method, args...)
template <typename T, typename M, typename... A>
  requires std::is_member_function_pointer_v<M>
auto dispatch(const PID<T>& pid, M method, A&&... args) {
  using R = std::invoke_result_t<M, T&, std::decay_t<A>...>;
  T* object = pid.process();
  return detail::dispatchCall<UnwrapT<R>>(
      pid.context(),
      [object, method, bound = std::make_tuple(std::decay_t<A>(std::forward<A>(args))...)]() mutable
      -> decltype(auto) {
        return std::apply(
            [&](auto&... a) -> decltype(auto) { return std::invoke(method, *object, std::move(a)...); },
            bound);
      });
}

// dispatch(pid, f): runs f() on pid's strand.
template <typename T, typename F>
  requires(!std::is_member_function_pointer_v<std::decay_t<F>> && std::is_invocable_v<std::decay_t<F>&>)
auto dispatch(const PID<T>& pid, F&& f) {
  using R = std::invoke_result_t<std::decay_t<F>&>;
  return detail::dispatchCall<UnwrapT<R>>(pid.context(), std::forward<F>(f));
}
// clang-format on

}  // namespace prov::actors
