#pragma once

// Work shared by everyone who asks for the same key while it runs (Mesos
// docker/store.cpp `pulling`): the first join() starts it, later ones wait
// for the same result. Each caller gets a future of its own; discarding it
// leaves the work, and when the last caller leaves, the work itself is
// discarded and forgotten (a new join() starts it afresh). Work that is
// abandoned (its promise dropped, say by a runtime shutting down) is
// forgotten too, and abandons its callers' futures: none waits forever, and
// the next join() starts it afresh. Callers share the value, not copies.
//
// Not thread-safe: owned by one process, and `post` must run what it is
// given on that process (actors::defer on its PID), or drop it once the
// process is gone.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/future.hpp"

namespace prov::actors {

template <typename T>
class SharedWork {
 public:
  using Post = std::function<void(std::function<void()>)>;
  SharedWork() = default;
  // `post` must not refer to the owner object itself (callbacks may run
  // after it is gone): bind it to the owner's PID. Set before the first join.
  void setPost(Post post) { post_ = std::move(post); }

  template <typename Start>
  Future<T> join(const std::string& key, Start&& start) {
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      Entry entry{start(), ++generation_, {}};
      it = entries_.emplace(key, std::move(entry)).first;
      const std::uint64_t generation = it->second.generation;
      auto over = [this, post = post_, key, generation] { post([=, this] { finish(key, generation); }); };
      it->second.work.onAny(over);
      it->second.work.onAbandoned(over);
    }
    auto waiter = std::make_shared<Promise<T>>();
    it->second.waiters.push_back(waiter);
    const std::uint64_t generation = it->second.generation;
    waiter->future().onDiscard([this, post = post_, key, generation, weak = std::weak_ptr(waiter)] {
      post([=, this] {
        if (auto w = weak.lock()) leave(key, generation, w);
      });
    });
    return waiter->future();
  }

  // The work under `key`, if running, as a future that cannot discard it.
  std::optional<Future<T>> peek(const std::string& key) const {
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    return undiscardable(it->second.work);
  }

  std::vector<std::string> keys() const {
    std::vector<std::string> all;
    for (const auto& [key, entry] : entries_) all.push_back(key);
    return all;
  }

 private:
  struct Entry {
    Future<T> work;
    std::uint64_t generation;
    std::vector<std::shared_ptr<Promise<T>>> waiters;
  };

  void finish(const std::string& key, std::uint64_t generation) {
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.generation != generation) return;
    Entry entry = std::move(it->second);
    entries_.erase(it);
    // Abandoned: dropping the waiters' promises abandons their futures.
    if (entry.work.isPending()) return;
    for (const auto& waiter : entry.waiters) {
      if (entry.work.isReady()) {
        waiter->set(entry.work.share());
      } else if (entry.work.isFailed()) {
        waiter->fail(entry.work.failure());
      } else {
        waiter->discard();
      }
    }
  }

  void leave(const std::string& key, std::uint64_t generation, const std::shared_ptr<Promise<T>>& waiter) {
    waiter->discard();
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.generation != generation) return;
    auto& waiters = it->second.waiters;
    std::erase(waiters, waiter);
    if (waiters.empty()) {
      Future<T> work = it->second.work;
      entries_.erase(it);
      work.discard();
    }
  }

  Post post_;
  std::map<std::string, Entry> entries_;
  std::uint64_t generation_ = 0;
};

}  // namespace prov::actors
