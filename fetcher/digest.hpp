#pragma once

// Content digests ("sha256:<hex>"): validation before a digest is used in a
// URL or a path (CVE-2024-3727), and streaming hashing with OpenSSL's SHA-2.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fetcher/types.hpp"

namespace prov::fetcher {

// Ok when `digest` is "sha256:" + 64 or "sha512:" + 128 lowercase hex
// digits; InvalidArgument naming the problem otherwise.
Try<Nothing> validateDigest(std::string_view digest);

// Incremental sha256 or sha512. Not thread-safe; cheap to move.
class Hasher {
 public:
  // `algorithm` is "sha256" or "sha512".
  static Try<Hasher> create(std::string_view algorithm);
  // The hasher for a validated digest's algorithm.
  static Try<Hasher> forDigest(std::string_view digest);

  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  ~Hasher();

  void update(const void* data, std::size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  // "<algorithm>:<hex>". The hasher is spent afterwards.
  std::string finish();

 private:
  struct State;
  explicit Hasher(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The check every blob passes on its way from a source to its consumer,
// registry or local: its bytes counted against the descriptor's size (not
// checked when negative) and hashed against its digest. Not thread-safe:
// one step at a time.
class BlobCheck {
 public:
  // InvalidArgument for a digest of an unknown algorithm; messages start
  // with `what`. A blob without a size (negative) may have up to
  // `maxUnsized` bytes.
  static Try<BlobCheck> create(std::string_view digest, std::int64_t size, std::string what,
                               std::uint64_t maxUnsized = UINT64_MAX);

  // Counts `bytes` more: DigestMismatch when they would pass the size,
  // ResourceExhausted when an unsized blob would pass `maxUnsized`.
  Try<Nothing> admit(std::size_t bytes);
  void hash(std::string_view chunk) { hasher_.update(chunk); }
  std::uint64_t delivered() const { return delivered_; }
  // DigestMismatch when fewer bytes came than the size says, or when they
  // hash to another digest. Spends the hasher.
  Try<Nothing> finish();

 private:
  BlobCheck(Hasher hasher, std::string digest, std::int64_t size, std::string what, std::uint64_t maxUnsized);
  Hasher hasher_;
  std::string digest_;
  std::int64_t size_;
  std::uint64_t maxUnsized_;
  std::string what_;
  std::uint64_t delivered_ = 0;
};

// "sha256:<hex of data>".
std::string sha256Digest(std::string_view data);

// Ok when `data` hashes to `digest` (whose algorithm it uses);
// DigestMismatch naming both digests otherwise.
Try<Nothing> verifyDigest(std::string_view data, std::string_view digest, std::string_view what);

}  // namespace prov::fetcher
