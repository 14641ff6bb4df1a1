#include "store/decompress.hpp"

#include <isa-l/igzip_lib.h>
#include <zstd.h>

#include <vector>

namespace prov::store {

Try<Nothing> Decompressor::emit(std::string_view data, const Output& out) {
  if (data.empty()) return Nothing{};
  outputBytes_ += data.size();
  if (outputBytes_ > limit_) {
    return Error(ErrorKind::ResourceExhausted, "Failed to unpack " + what_ + ": it unpacks to more than " +
                                                   std::to_string(limit_) + " bytes (the layer size limit)");
  }
  return out(data);
}

Error Decompressor::corrupt(const std::string& why) const {
  return Error(ErrorKind::Corruption, "Failed to unpack " + what_ + ": " + why);
}

namespace {

class Plain final : public Decompressor {
 public:
  using Decompressor::Decompressor;
  Try<Nothing> feed(std::string_view input, const Output& out) override { return emit(input, out); }
  Try<Nothing> finish(const Output&) override { return Nothing{}; }
};

// igzip, one gzip member after another (concatenated members are valid gzip).
class Gzip final : public Decompressor {
 public:
  Gzip(std::string what, std::uint64_t limit) : Decompressor(std::move(what), limit), buffer_(kOutputChunk) {
    reset();
  }

  Try<Nothing> feed(std::string_view input, const Output& out) override {
    while (!input.empty()) {
      if (state_.block_state == ISAL_BLOCK_FINISH) reset();  // the next member
      state_.next_in = reinterpret_cast<uint8_t*>(const_cast<char*>(input.data()));
      state_.avail_in = static_cast<uint32_t>(std::min<std::size_t>(input.size(), 1u << 30));
      const std::size_t offered = state_.avail_in;
      do {
        state_.next_out = reinterpret_cast<uint8_t*>(buffer_.data());
        state_.avail_out = static_cast<uint32_t>(buffer_.size());
        const int rc = isal_inflate(&state_);
        if (rc != ISAL_DECOMP_OK) return corrupt(message(rc));
        auto sent = emit(std::string_view(buffer_.data(), buffer_.size() - state_.avail_out), out);
        if (sent.isError()) return sent;
        inMember_ = state_.block_state != ISAL_BLOCK_FINISH;
      } while (state_.avail_out == 0 && state_.block_state != ISAL_BLOCK_FINISH);
      input.remove_prefix(offered - state_.avail_in);
      if (state_.avail_in > 0 && state_.block_state != ISAL_BLOCK_FINISH) return corrupt("the inflater stopped early");
    }
    return Nothing{};
  }

  Try<Nothing> finish(const Output&) override {
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
  std::vector<char> buffer_;
  bool inMember_ = false;
  bool sawMember_ = false;
};

class Zstd final : public Decompressor {
 public:
  Zstd(std::string what, std::uint64_t limit)
      : Decompressor(std::move(what), limit), stream_(ZSTD_createDStream()), buffer_(ZSTD_DStreamOutSize()) {
    ZSTD_initDStream(stream_);
  }
  ~Zstd() override { ZSTD_freeDStream(stream_); }

  Try<Nothing> feed(std::string_view input, const Output& out) override {
    ZSTD_inBuffer in{input.data(), input.size(), 0};
    while (in.pos < in.size || pendingOutput_) {
      ZSTD_outBuffer o{buffer_.data(), buffer_.size(), 0};
      const std::size_t rc = ZSTD_decompressStream(stream_, &o, &in);
      if (ZSTD_isError(rc)) return corrupt(std::string("zstd: ") + ZSTD_getErrorName(rc));
      auto sent = emit(std::string_view(buffer_.data(), o.pos), out);
      if (sent.isError()) return sent;
      frameOpen_ = rc != 0;
      pendingOutput_ = o.pos == o.size;  // more may be buffered inside
      if (o.pos == 0 && in.pos == in.size) break;
    }
    seen_ = seen_ || !input.empty();
    return Nothing{};
  }

  Try<Nothing> finish(const Output& out) override {
    auto drained = feed({}, out);
    if (drained.isError()) return drained;
    if (!seen_) return corrupt("the blob is empty, not zstd");
    if (frameOpen_) return corrupt("the zstd stream is truncated");
    return Nothing{};
  }

 private:
  ZSTD_DStream* stream_;
  std::vector<char> buffer_;
  bool frameOpen_ = false;
  bool pendingOutput_ = false;
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
