#pragma once

// A TCP relay on 127.0.0.1 that holds every byte for a fixed one-way delay
// in each direction: a registry on loopback made to look as far away as a
// real one (the round trip is twice the delay). Bytes keep their order and
// pace: a chunk read at time t is written at t + delay, so a long body is
// late by the delay, not by the delay per chunk. A new connection's first
// bytes wait one round trip more, as behind a TCP handshake (a TLS one
// would cost more: the registry here speaks plain http). For benches only.

#include <chrono>
#include <memory>
#include <string>

namespace prov::bench {

class LatencyProxy {
 public:
  // Relays to `upstreamPort` on 127.0.0.1; listens on a free port.
  LatencyProxy(int upstreamPort, std::chrono::microseconds oneWay);
  ~LatencyProxy();
  LatencyProxy(const LatencyProxy&) = delete;
  LatencyProxy& operator=(const LatencyProxy&) = delete;

  int port() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace prov::bench
