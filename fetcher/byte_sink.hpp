#pragma once

// Where a blob's bytes go, in order: the one interface between a source
// (registry or local) and its consumer (the store's layer stream).

#include <string_view>

#include "actors/future.hpp"

namespace prov::fetcher {

// A failed future aborts the transfer. After a failed transfer the bytes
// received are garbage.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  // `chunk` stays valid until the returned future completes.
  virtual actors::Future<actors::Nothing> write(std::string_view chunk) = 0;
};

}  // namespace prov::fetcher
