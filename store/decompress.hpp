#pragma once

// Streaming decompression of layer blobs: gzip through ISA-L's igzip
// (several times zlib's speed), zstd through libzstd, or none. Bytes are
// pushed in as they arrive and pushed out in pieces of at most
// `kOutputChunk`; nothing waits for a whole blob.
//
// Errors: Corruption naming the layer for malformed or truncated input
// (finish() on a stream that has not ended is a truncation); ResourceExhausted
// when the output passes `maxOutputBytes` (a decompression bomb stops there,
// it never fills the disk); whatever `out` returns, as it is.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "actors/error.hpp"
#include "fetcher/manifest.hpp"

namespace prov::store {

using actors::Error;
using actors::ErrorKind;
using actors::Nothing;
using actors::Try;
using fetcher::Compression;

inline constexpr std::size_t kOutputChunk = 256 * 1024;

// Unpacked bytes shared by the layers of one image, taken as they unpack
// (from several threads). Past the limit, `exhausted` is the error.
class ByteBudget {
 public:
  ByteBudget(std::uint64_t limit, Error exhausted) : limit_(limit), exhausted_(std::move(exhausted)) {}
  Try<Nothing> take(std::uint64_t bytes) {
    if (used_.fetch_add(bytes) + bytes > limit_) return exhausted_;
    return Nothing{};
  }
  // What a failed layer took: it unpacks again, or not at all.
  void giveBack(std::uint64_t bytes) { used_.fetch_sub(bytes); }

 private:
  const std::uint64_t limit_;
  const Error exhausted_;
  std::atomic<std::uint64_t> used_{0};
};

class Decompressor {
 public:
  using Output = std::function<Try<Nothing>(std::string_view)>;

  // `what` names the layer in messages.
  static Try<std::unique_ptr<Decompressor>> create(Compression compression, std::string what,
                                                   std::uint64_t maxOutputBytes);
  virtual ~Decompressor() = default;

  // Pull form: decompresses from the front of `input` (consuming what it
  // used) and returns at most kOutputChunk bytes of output. The output is
  // valid until the second call after this one: two buffers take turns, so
  // a piece can still be read (hashed beside the extraction) while the next
  // one is made. Without compression the output is a view of `input`'s own
  // bytes. Empty output means `input` is used up (more is needed, or, when
  // the input has ended, the end). Counts against the limit.
  virtual Try<std::string_view> pull(std::string_view& input) = 0;
  // The input has ended (call after pull() returned empty for empty input):
  // Ok only when the compressed stream ended too.
  virtual Try<Nothing> end() = 0;

  // Push form over pull(): decompresses `input`, handing the output to `out`.
  Try<Nothing> feed(std::string_view input, const Output& out);
  // Drains what is left and checks the stream ended (end()).
  Try<Nothing> finish(const Output& out);

  std::uint64_t outputBytes() const { return outputBytes_; }
  // Output also counts against `budget` (may be null); outputBytes() is
  // what this one took of it.
  void shareBudget(std::shared_ptr<ByteBudget> budget) { budget_ = std::move(budget); }

 protected:
  Decompressor(std::string what, std::uint64_t limit) : what_(std::move(what)), limit_(limit) {}
  // Counts `data`; ResourceExhausted past the limit.
  Try<std::string_view> produced(std::string_view data);
  Error corrupt(const std::string& why) const;

  std::string what_;
  std::uint64_t limit_;
  std::uint64_t outputBytes_ = 0;
  std::shared_ptr<ByteBudget> budget_;
};

}  // namespace prov::store
