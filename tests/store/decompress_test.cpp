#include <gtest/gtest.h>

#include "fetcher/digest.hpp"
#include "store/decompress.hpp"
#include "testkit/image_builder.hpp"

namespace prov::store {
namespace {

using testing::TarCompression;
using testing::TarEntry;

// Feeds `blob` in pieces of `piece` bytes; returns the output or the error.
Try<std::string> unpack(Compression compression, const std::string& blob, std::size_t piece,
                        std::uint64_t limit = 1ull << 32) {
  auto d = Decompressor::create(compression, "layer 'test'", limit);
  if (d.isError()) return d.error();
  std::string out;
  auto collect = [&](std::string_view chunk) -> Try<Nothing> {
    out.append(chunk);
    return Nothing{};
  };
  for (std::size_t at = 0; at < blob.size(); at += piece) {
    auto fed = (*d)->feed(std::string_view(blob).substr(at, piece), collect);
    if (fed.isError()) return fed.error();
  }
  auto done = (*d)->finish(collect);
  if (done.isError()) return done.error();
  return out;
}

std::vector<TarEntry> sampleTree() {
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "line " + std::to_string(i) + "\n";
  return {TarEntry::directory("etc"), TarEntry::file("etc/text", text), TarEntry::symlink("etc/link", "text")};
}

TEST(DecompressTest, GzipZstdAndNoneRoundTripInAnyPieces) {
  const std::string tar = testing::makeTar(sampleTree(), TarCompression::None);
  for (auto [compression, kind] :
       {std::pair{Compression::Gzip, TarCompression::Gzip}, std::pair{Compression::Zstd, TarCompression::Zstd},
        std::pair{Compression::None, TarCompression::None}}) {
    const std::string blob = testing::makeTar(sampleTree(), kind);
    for (std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, blob.size()}) {
      auto out = unpack(compression, blob, piece);
      ASSERT_TRUE(out.isSome()) << out.error().message;
      EXPECT_EQ(fetcher::sha256Digest(tar), fetcher::sha256Digest(*out)) << piece;
    }
  }
}

// A piece pull() returns stays as it was through the next call (the layer
// stream hashes it beside the extraction meanwhile); the one after may
// reuse its memory.
TEST(DecompressTest, APulledPieceOutlivesTheNextPull) {
  std::string text;
  for (int i = 0; i < 400000; ++i) text += "line " + std::to_string(i) + "\n";  // several output chunks
  const std::string tar = testing::makeTar({TarEntry::file("text", text)}, TarCompression::None);
  for (auto [compression, kind] :
       {std::pair{Compression::Gzip, TarCompression::Gzip}, std::pair{Compression::Zstd, TarCompression::Zstd},
        std::pair{Compression::None, TarCompression::None}}) {
    SCOPED_TRACE(static_cast<int>(compression));
    auto d = Decompressor::create(compression, "layer 'test'", 1ull << 32);
    ASSERT_TRUE(d.isSome());
    const std::string blob = testing::makeTar({TarEntry::file("text", text)}, kind);
    std::string_view input = blob;  // all of it at once: the pieces come from pull() alone
    std::string out;
    std::string_view previous;
    std::string previousCopy;
    int pieces = 0;
    for (;;) {
      auto piece = (*d)->pull(input);
      ASSERT_TRUE(piece.isSome()) << piece.error().message;
      // The piece before this one is intact after this call.
      ASSERT_EQ(previousCopy, previous) << "piece " << pieces - 1 << " changed under the next pull";
      if (piece->empty()) break;
      out.append(*piece);
      previous = *piece;
      previousCopy.assign(*piece);
      ++pieces;
    }
    ASSERT_TRUE((*d)->end().isSome());
    EXPECT_GT(pieces, 3);
    EXPECT_EQ(tar, out);
  }
}

TEST(DecompressTest, ConcatenatedGzipMembersAreOneStream) {
  const std::string a = testing::makeTar({TarEntry::file("a", "first")}, TarCompression::None);
  const std::string gzA = testing::makeTar({TarEntry::file("a", "first")}, TarCompression::Gzip);
  const std::string gzB = testing::makeTar({TarEntry::file("b", "second")}, TarCompression::Gzip);
  const std::string b = testing::makeTar({TarEntry::file("b", "second")}, TarCompression::None);
  auto out = unpack(Compression::Gzip, gzA + gzB, 100);
  ASSERT_TRUE(out.isSome()) << out.error().message;
  EXPECT_EQ(a + b, *out);
}

TEST(DecompressTest, TruncatedGarbageAndEmptyAreCorruption) {
  const std::string gz = testing::makeTar(sampleTree(), TarCompression::Gzip);
  const std::string zst = testing::makeTar(sampleTree(), TarCompression::Zstd);
  for (auto [compression, blob] : {std::pair{Compression::Gzip, gz}, std::pair{Compression::Zstd, zst}}) {
    auto truncated = unpack(compression, blob.substr(0, blob.size() / 2), 1000);
    ASSERT_TRUE(truncated.isError());
    EXPECT_EQ(ErrorKind::Corruption, truncated.error().kind);
    EXPECT_NE(std::string::npos, truncated.error().message.find("truncated")) << truncated.error().message;
    EXPECT_NE(std::string::npos, truncated.error().message.find("layer 'test'"));
    auto garbage = unpack(compression, std::string(5000, 'g'), 1000);
    ASSERT_TRUE(garbage.isError());
    EXPECT_EQ(ErrorKind::Corruption, garbage.error().kind);
    auto empty = unpack(compression, "", 1000);
    ASSERT_TRUE(empty.isError());
    EXPECT_EQ(ErrorKind::Corruption, empty.error().kind);
  }
  // A flipped byte in the deflate data or the trailer.
  std::string flipped = gz;
  flipped[flipped.size() - 6] ^= 0x55;  // inside the CRC32
  auto bad = unpack(Compression::Gzip, flipped, 4096);
  ASSERT_TRUE(bad.isError());
  EXPECT_EQ(ErrorKind::Corruption, bad.error().kind);
}

TEST(DecompressTest, BombStopsAtTheLimit) {
  const std::string bomb = testing::makeTar({TarEntry::file("zeros", std::string(64u << 20, '\0'))},
                                            TarCompression::Gzip);
  ASSERT_LT(bomb.size(), 1u << 20);
  std::uint64_t seen = 0;
  auto d = *Decompressor::create(Compression::Gzip, "layer 'bomb'", 8u << 20);
  auto count = [&](std::string_view chunk) -> Try<Nothing> {
    seen += chunk.size();
    return Nothing{};
  };
  auto fed = d->feed(bomb, count);
  ASSERT_TRUE(fed.isError());
  EXPECT_EQ(ErrorKind::ResourceExhausted, fed.error().kind);
  EXPECT_LE(seen, 8u << 20);
  auto zstdBomb = unpack(
      Compression::Zstd,
      testing::makeTar({TarEntry::file("zeros", std::string(64u << 20, '\0'))}, TarCompression::Zstd), 65536, 8u << 20);
  ASSERT_TRUE(zstdBomb.isError());
  EXPECT_EQ(ErrorKind::ResourceExhausted, zstdBomb.error().kind);
}

}  // namespace
}  // namespace prov::store
