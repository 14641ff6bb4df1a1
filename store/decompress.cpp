#include "store/decompress.hpp"

#include <isa-l/igzip_lib.h>
#include <zstd.h>

#include <memory>

namespace prov::store {

Try<std::string_view> Decompressor::produced(std::string_view data) {
  // outputBytes_ counts only what was let through: what the budget holds.
  if (outputBytes_ + data.size() > limit_) {
    return Error(ErrorKind::ResourceExhausted, "Failed to unpack " + what_ + ": it unpacks to more than " +
                                                   std::to_string(limit_) +
                                                   " bytes (the layer size limit, --max_layer_bytes)");
  }
  if (budget_) {
    if (auto taken = budget_->take(data.size()); taken.isError()) {
      budget_->giveBack(data.size());
      return taken.error();
    }
  }
  outputBytes_ += data.size();
  return data;
}

Error Decompressor::corrupt(const std::string& why) const {
  return Error(ErrorKind::Corruption, "Failed to unpack " + what_ + ": " + why);
}

Try<Nothing> Decompressor::feed(std::string_view input, const Output& out) {
  for (;;) {
    auto piece = pull(input);
    if (piece.isError()) return piece.error();
    if (piece->empty()) return Nothing{};
    auto sent = out(*piece);
    if (sent.isError()) return sent;
  }
}

Try<Nothing> Decompressor::finish(const Output& out) {
  auto drained = feed({}, out);
  if (drained.isError()) return drained;
  return end();
}

namespace {

// Two output buffers taking turns, so that a piece pull() returned stays
// valid through the next call. The inflaters keep their windows in their
// own state, never in a previous output buffer. Left uninitialised: the
// inflater writes before anyone reads, and a small layer then touches (and
// faults in) only the pages its output needs.
class TurnBuffers {
 public:
  struct Buffer {
    char* data() { return bytes.get(); }
    std::size_t size() const { return length; }
    std::unique_ptr<char[]> bytes;
    std::size_t length = 0;
  };

  explicit TurnBuffers(std::size_t size) {
    for (auto& buffer : buffers_) buffer = Buffer{std::make_unique_for_overwrite<char[]>(size), size};
  }
  // Where the next piece is made.
  Buffer& next() { return buffers_[turn_]; }
  // The first `size` bytes of next(), now made; the piece after goes to the
  // other buffer.
  std::string_view made(std::size_t size) {
    const std::string_view piece(buffers_[turn_].data(), size);
    turn_ ^= 1;
    return piece;
  }

 private:
  Buffer buffers_[2];
  int turn_ = 0;
};

class Plain final : public Decompressor {
 public:
  using Decompressor::Decompressor;
  Try<std::string_view> pull(std::string_view& input) override {
    const std::string_view piece = input.substr(0, kOutputChunk);
    input.remove_prefix(piece.size());
    return produced(piece);
  }
  Try<Nothing> end() override { return Nothing{}; }
};

// igzip, one gzip member after another (concatenated members are valid gzip).
class Gzip final : public Decompressor {
 public:
  Gzip(std::string what, std::uint64_t limit) : Decompressor(std::move(what), limit), buffers_(kOutputChunk) {
    reset();
  }

  Try<std::string_view> pull(std::string_view& input) override {
    while (!input.empty() || pendingOutput_) {
      if (state_.block_state == ISAL_BLOCK_FINISH) {
        if (input.empty()) break;
        reset();  // the next member
      }
      state_.next_in = reinterpret_cast<uint8_t*>(const_cast<char*>(input.data()));
      state_.avail_in = static_cast<uint32_t>(std::min<std::size_t>(input.size(), 1u << 30));
      const std::size_t offered = state_.avail_in;
      TurnBuffers::Buffer& buffer = buffers_.next();
      state_.next_out = reinterpret_cast<uint8_t*>(buffer.data());
      state_.avail_out = static_cast<uint32_t>(buffer.size());
      const int rc = isal_inflate(&state_);
      if (rc != ISAL_DECOMP_OK) return corrupt(message(rc));
      input.remove_prefix(offered - state_.avail_in);
      inMember_ = state_.block_state != ISAL_BLOCK_FINISH;
      const std::size_t made = buffer.size() - state_.avail_out;
      pendingOutput_ = state_.avail_out == 0;  // more may be held inside
      if (made > 0) return produced(buffers_.made(made));
      if (state_.avail_in > 0 && inMember_) return corrupt("the inflater stopped early");
    }
    return std::string_view();
  }

  Try<Nothing> end() override {
    if (!sawMember_) return corrupt("the blob is empty, not gzip");
    if (inMember_) return corrupt("the gzip stream is truncated");
    return Nothing{};
  }

 private:
  void reset() {
    isal_inflate_init(&state_);
    state_.crc_flag = ISAL_GZIP;
    inMember_ = true;
    sawMember_ = true;
  }

  static std::string message(int rc) {
    switch (rc) {
      case ISAL_INVALID_BLOCK: return "invalid deflate data";
      case ISAL_INVALID_SYMBOL: return "invalid deflate symbol";
      case ISAL_INVALID_LOOKBACK: return "invalid deflate distance";
      case ISAL_INVALID_WRAPPER: return "not gzip (bad header)";
      case ISAL_UNSUPPORTED_METHOD: return "unsupported gzip compression method";
      case ISAL_INCORRECT_CHECKSUM: return "the gzip checksum does not match";
      default: return "gzip error " + std::to_string(rc);
    }
  }

  inflate_state state_{};
  TurnBuffers buffers_;
  bool pendingOutput_ = false;
  bool inMember_ = false;
  bool sawMember_ = false;
};

class Zstd final : public Decompressor {
 public:
  Zstd(std::string what, std::uint64_t limit)
      : Decompressor(std::move(what), limit), stream_(ZSTD_createDStream()), buffers_(ZSTD_DStreamOutSize()) {
    ZSTD_initDStream(stream_);
  }
  ~Zstd() override { ZSTD_freeDStream(stream_); }

  Try<std::string_view> pull(std::string_view& input) override {
    seen_ = seen_ || !input.empty();
    for (;;) {
      ZSTD_inBuffer in{input.data(), input.size(), 0};
      TurnBuffers::Buffer& buffer = buffers_.next();
      ZSTD_outBuffer o{buffer.data(), buffer.size(), 0};
      const std::size_t rc = ZSTD_decompressStream(stream_, &o, &in);
      if (ZSTD_isError(rc)) return corrupt(std::string("zstd: ") + ZSTD_getErrorName(rc));
      input.remove_prefix(in.pos);
      // A call that made no progress says nothing about the frame (after a
      // frame ended it would report the next frame's header as needed).
      if (in.pos > 0 || o.pos > 0) frameOpen_ = rc != 0;
      if (o.pos > 0) return produced(buffers_.made(o.pos));
      if (input.empty()) return std::string_view();
    }
  }

  Try<Nothing> end() override {
    if (!seen_) return corrupt("the blob is empty, not zstd");
    if (frameOpen_) return corrupt("the zstd stream is truncated");
    return Nothing{};
  }

 private:
  ZSTD_DStream* stream_;
  TurnBuffers buffers_;
  bool frameOpen_ = false;
  bool seen_ = false;
};

}  // namespace

Try<std::unique_ptr<Decompressor>> Decompressor::create(Compression compression, std::string what,
                                                        std::uint64_t maxOutputBytes) {
  switch (compression) {
    case Compression::None: return std::unique_ptr<Decompressor>(new Plain(std::move(what), maxOutputBytes));
    case Compression::Gzip: return std::unique_ptr<Decompressor>(new Gzip(std::move(what), maxOutputBytes));
    case Compression::Zstd: return std::unique_ptr<Decompressor>(new Zstd(std::move(what), maxOutputBytes));
  }
  return Error(ErrorKind::Internal, "unknown compression");
}

}  // namespace prov::store
