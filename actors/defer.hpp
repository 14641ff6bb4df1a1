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

namespace detail {

// defer's callables. Called as an rvalue (then() calls its continuation so:
// once), they move what they hold into the dispatch instead of copying it.
// clang-format 14 garbles requires-clauses:
// clang-format off
template <typename T, typename M, typename... B>
class DeferredMethod {
 public:
  DeferredMethod(const PID<T>& pid, M method, std::tuple<B...> bound)
      : pid_(pid), method_(method), bound_(std::move(bound)) {}

  template <typename... A>
    requires std::is_invocable_v<M, T&, B..., std::decay_t<A>...>
  auto operator()(A&&... args) const& {
    return std::apply(
        [&](const B&... b) { return dispatch(pid_, method_, b..., std::forward<A>(args)...); }, bound_);
  }
  template <typename... A>
    requires std::is_invocable_v<M, T&, B..., std::decay_t<A>...>
  auto operator()(A&&... args) && {
    return std::apply(
        [&](B&... b) { return dispatch(pid_, method_, std::move(b)..., std::forward<A>(args)...); }, bound_);
  }

 private:
  PID<T> pid_;
  M method_;
  std::tuple<B...> bound_;
};

template <typename T, typename F>
class DeferredCall {
 public:
  DeferredCall(const PID<T>& pid, F f) : pid_(pid), f_(std::move(f)) {}

  template <typename... A>
    requires std::is_invocable_v<F&, std::decay_t<A>&...>
  auto operator()(A&&... args) const& {
    return dispatch(pid_, [f = f_, bound = std::make_tuple(std::decay_t<A>(std::forward<A>(args))...)]() mutable
                    -> decltype(auto) { return std::apply(f, bound); });
  }
  template <typename... A>
    requires std::is_invocable_v<F&, std::decay_t<A>&...>
  auto operator()(A&&... args) && {
    return dispatch(pid_, [f = std::move(f_), bound = std::make_tuple(std::decay_t<A>(std::forward<A>(args))...)]()
                              mutable -> decltype(auto) { return std::apply(f, bound); });
  }

 private:
  PID<T> pid_;
  F f_;
};
// clang-format on

}  // namespace detail

template <typename T, typename M, typename... B>
requires std::is_member_function_pointer_v<M>
auto defer(const PID<T>& pid, M method, B&&... bound) {
  return detail::DeferredMethod<T, M, std::decay_t<B>...>(pid, method,
                                                          std::make_tuple(std::decay_t<B>(std::forward<B>(bound))...));
}

template <typename T, typename F>
requires(!std::is_member_function_pointer_v<std::decay_t<F>>) auto defer(const PID<T>& pid, F&& f) {
  return detail::DeferredCall<T, std::decay_t<F>>(pid, std::forward<F>(f));
}

}  // namespace prov::actors
