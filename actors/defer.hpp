#pragma once

// defer: a callable that, when invoked, dispatches onto a process. Use it for
// every continuation that touches actor state:
//
//   fetchManifest(ref).then(defer(self(), &Self::fetchLayers, ref));
//   // on READY: dispatch(self(), &Self::fetchLayers, ref, manifest)
//
// defer(pid, &T::method, bound...) called with (args...) dispatches
// method(bound..., args...) -- bound arguments first, like std::bind_front.
// defer(pid, f) called with (args...) dispatches f(args...). Either way the
// call returns the dispatch's future, so then() associates with it and
// discard requests travel into the deferred call. The callable is only
// invocable with arguments the target accepts, so then() can tell whether
// to pass the value (f(value) or f()).

#include <tuple>
#include <type_traits>

#include "actors/dispatch.hpp"

namespace prov::actors {

// clang-format 14 garbles requires-clauses:
// clang-format off
template <typename T, typename M, typename... B>
  requires std::is_member_function_pointer_v<M>
auto defer(const PID<T>& pid, M method, B&&... bound) {
  return [pid, method, bound = std::make_tuple(std::decay_t<B>(std::forward<B>(bound))...)](
             auto&&... args)
           requires std::is_invocable_v<M, T&, std::decay_t<B>..., std::decay_t<decltype(args)>...>
  {
    return std::apply(
        [&](const auto&... b) {
          return dispatch(pid, method, b..., std::forward<decltype(args)>(args)...);
        },
        bound);
  };
}

template <typename T, typename F>
  requires(!std::is_member_function_pointer_v<std::decay_t<F>>)
auto defer(const PID<T>& pid, F&& f) {
  return [pid, f = std::forward<F>(f)](auto&&... args)
           requires std::is_invocable_v<std::decay_t<F>&, std::decay_t<decltype(args)>&...>
  {
    return dispatch(pid, [f, bound = std::make_tuple(std::decay_t<decltype(args)>(
                                 std::forward<decltype(args)>(args))...)]() mutable -> decltype(auto) {
      return std::apply(f, bound);
    });
  };
}
// clang-format on

}  // namespace prov::actors
