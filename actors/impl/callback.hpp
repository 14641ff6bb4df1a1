#pragma once

// The callbacks a future keeps (impl/future.hpp): move-only callables kept
// inline when small, and lists of them whose first entry is inline.
//
// std::function keeps inline only what is trivially copyable, so each
// callback that holds a shared_ptr (a promise, a weak reference to a
// source: nearly all of a future's) cost an allocation, and each list its
// vector's. A provision made about 180 such allocations this way.

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace prov::actors::detail {

template <typename... Args>
class Callback {
 public:
  Callback() = default;
  template <typename F>
  requires(!std::is_same_v<std::decay_t<F>, Callback> && std::is_invocable_v<std::decay_t<F>&, Args...>)
      Callback(F&& f) {  // NOLINT: implicit, as std::function's
    using Fn = std::decay_t<F>;
    if constexpr (sizeof(Fn) <= kInline && alignof(Fn) <= alignof(std::max_align_t) &&
                  std::is_nothrow_move_constructible_v<Fn>) {
      ::new (static_cast<void*>(storage_)) Fn(std::forward<F>(f));
      ops_ = &kInlineOps<Fn>;
    } else {
      ::new (static_cast<void*>(storage_)) Fn*(new Fn(std::forward<F>(f)));
      ops_ = &kHeapOps<Fn>;
    }
  }
  Callback(Callback&& other) noexcept { take(other); }
  Callback& operator=(Callback&& other) noexcept {
    if (this != &other) {
      reset();
      take(other);
    }
    return *this;
  }
  Callback(const Callback&) = delete;
  Callback& operator=(const Callback&) = delete;
  ~Callback() { reset(); }

  explicit operator bool() const { return ops_ != nullptr; }
  void operator()(Args... args) { ops_->call(storage_, std::forward<Args>(args)...); }

 private:
  static constexpr std::size_t kInline = 56;

  struct Ops {
    void (*call)(void* storage, Args... args);
    void (*relocate)(void* from, void* to);  // move-constructs at `to`, destroys at `from`
    void (*destroy)(void* storage);
  };

  template <typename Fn>
  static constexpr Ops kInlineOps = {[](void* s, Args... args) { (*static_cast<Fn*>(s))(std::forward<Args>(args)...); },
                                     [](void* from, void* to) {
                                       ::new (to) Fn(std::move(*static_cast<Fn*>(from)));
                                       static_cast<Fn*>(from)->~Fn();
                                     },
                                     [](void* s) { static_cast<Fn*>(s)->~Fn(); }};

  template <typename Fn>
  static constexpr Ops kHeapOps = {[](void* s, Args... args) { (**static_cast<Fn**>(s))(std::forward<Args>(args)...); },
                                   [](void* from, void* to) { ::new (to) Fn*(*static_cast<Fn**>(from)); },
                                   [](void* s) { delete *static_cast<Fn**>(s); }};

  void take(Callback& other) noexcept {
    if (!other.ops_) return;
    other.ops_->relocate(other.storage_, storage_);
    ops_ = std::exchange(other.ops_, nullptr);
  }
  void reset() {
    if (ops_) std::exchange(ops_, nullptr)->destroy(storage_);
  }

  alignas(std::max_align_t) unsigned char storage_[kInline];
  const Ops* ops_ = nullptr;
};

// Callbacks in the order they were added; the first kept inline (a future
// has one of each kind, mostly).
template <typename... Args>
class CallbackList {
 public:
  void push(Callback<Args...> callback) {
    if (!first_) {
      first_ = std::move(callback);
    } else {
      rest_.push_back(std::move(callback));
    }
  }
  void swap(CallbackList& other) noexcept {
    std::swap(first_, other.first_);
    rest_.swap(other.rest_);
  }
  template <typename... A>
  void runAll(A&&... args) {
    if (first_) first_(args...);
    for (auto& callback : rest_) callback(args...);
  }
  void clear() {
    first_ = Callback<Args...>();
    rest_.clear();
  }

 private:
  Callback<Args...> first_;
  std::vector<Callback<Args...>> rest_;
};

}  // namespace prov::actors::detail
