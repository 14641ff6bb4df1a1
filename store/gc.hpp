#pragma once

// What a store's prune() removes: renamed into <store>/gc/ at once (so it is
// gone from the store's view in one step), then deleted in the background.
// Both stores use it. Owned by one process and called on its strand only;
// its continuations touch nothing but the file system.

#include <string>
#include <vector>

#include "actors/future.hpp"

namespace prov::actors {
class Runtime;
}

namespace prov::store {

class GarbageCollector {
 public:
  GarbageCollector(actors::Runtime& runtime, std::string storeDir);

  // Once `before` is READY, renames each of `paths` into gc/ on the blocking
  // pool (missing ones are skipped): READY when they are there, FAILED (IO)
  // when a rename fails. A sweep of gc/ then runs in the background.
  actors::Future<actors::Nothing> collect(const actors::Future<actors::Nothing>& before,
                                          std::vector<std::string> paths);

  // After a collect() that failed part way: those of `paths` still where
  // they were (not moved into gc/), which the store must keep counting.
  actors::Future<std::vector<std::string>> leftBehind(std::vector<std::string> paths) const;

  // READY once no collect() and no sweep it started is running: the
  // store's owner waits for it before the directory may go away.
  actors::Future<actors::Nothing> quiesce() const { return actors::undiscardable(idle_); }

 private:
  actors::Runtime& runtime_;
  const std::string storeDir_;
  actors::Future<actors::Nothing> idle_ = actors::Nothing{};
};

}  // namespace prov::store
