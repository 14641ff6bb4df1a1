#pragma once

// Gate: tracks work in flight so a component can shut down cleanly.
//
//   if (!gate_.enter()) return Error(ErrorKind::Unavailable, "shutting down");
//   doWork().onAny([this] { gate_.leave(); });
//   ...
//   gate_.close().then(...);   // no new entries; READY when the last leaves
//
// Thread-safe. close() may be called more than once; every call returns a
// future of the same completion.

#include <cstddef>
#include <mutex>

#include "actors/future.hpp"

namespace prov::actors {

class Gate {
 public:
  // False once close() was called; the caller must not do the work.
  bool enter();
  // Precondition: a matching successful enter().
  void leave();
  Future<Nothing> close();

  bool closed() const;
  std::size_t inside() const;

 private:
  mutable std::mutex mutex_;
  std::size_t inside_ = 0;
  bool closed_ = false;
  Promise<Nothing> drained_;
};

}  // namespace prov::actors
