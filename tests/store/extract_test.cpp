// One layer, streamed through LayerStream into a directory: the store's form
// of whiteouts, what is kept, each escape rejected, and each bad blob.

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "actors/path.hpp"
#include "fetcher/digest.hpp"
#include "store/layer_record.hpp"
#include "store/layer_stream.hpp"
#include "testkit/files.hpp"
#include "testkit/image_builder.hpp"
#include "tests/support/await.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using testing::TarCompression;
using testing::TarEntry;

TarEntry entry(std::string path, TarEntry::Type type, std::string content = {}) {
  TarEntry e;
  e.path = std::move(path);
  e.type = type;
  e.content = std::move(content);
  return e;
}

std::optional<std::string> xattr(const fs::path& path, const char* name) {
  char value[256];
  const ssize_t n = ::lgetxattr(path.c_str(), name, value, sizeof(value));
  if (n < 0) return std::nullopt;
  return std::string(value, static_cast<std::size_t>(n));
}

bool isWhiteout(const fs::path& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

class ExtractTest : public testing::TemporaryDirectoryTest {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    root_ = sandbox() / "layer";
    fs::create_directories(root_);
    outside_ = sandbox() / "outside";
    fs::create_directories(outside_);
  }

  // Streams `blob` in pieces of `piece` bytes into root_, as a puller would.
  actors::Future<ExtractedLayer> extract(const std::string& blob, LayerStreamOptions options,
                                         std::size_t piece = 64 * 1024) {
    options.apply.what = "layer 'test'";
    auto stream = LayerStream::start(runtime_, root_.string(), std::move(options));
    for (std::size_t at = 0; at < blob.size(); at += piece) {
      auto written = stream->write(std::string_view(blob).substr(at, piece));
      if (!written.waitFor(std::chrono::seconds(15)) || !written.isReady()) {
        stream->abort(Error(ErrorKind::Unavailable, "the download failed"));
        return stream->result();
      }
    }
    stream->end();
    auto result = stream->result();
    if (result.waitFor(std::chrono::seconds(30)) && result.isReady()) expectRecordIsTheTree();
    return result;
  }

  // The record the extraction wrote beside the root, made from the tar's
  // headers and the bytes on their way, says what the disk says.
  void expectRecordIsTheTree() {
    auto written = readRecord((sandbox() / "record").string());
    ASSERT_TRUE(written.isSome()) << written.error().message;
    auto disk = recordTree(root_.string());
    ASSERT_TRUE(disk.isSome()) << disk.error().message;
    for (const auto& [path, e] : *disk) {
      auto it = written->find(path);
      if (it == written->end()) {
        ADD_FAILURE() << "'" << path << "' is not in the record";
        continue;
      }
      const RecordedEntry& r = it->second;
      EXPECT_EQ(std::tie(e.mode, e.uid, e.gid, e.size, e.hash, e.rdev, e.target),
                std::tie(r.mode, r.uid, r.gid, r.size, r.hash, r.rdev, r.target))
          << "'" << path << "': mode " << std::oct << e.mode << " recorded " << r.mode << std::dec << ", owner "
          << e.uid << ":" << e.gid << " recorded " << r.uid << ":" << r.gid << ", size " << e.size << " recorded "
          << r.size;
    }
    for (const auto& [path, e] : *written) {
      EXPECT_EQ(1u, disk->count(path)) << "'" << path << "' is recorded but not on disk";
    }
  }

  actors::Future<ExtractedLayer> extractTar(const std::vector<TarEntry>& entries, bool bottom = false) {
    LayerStreamOptions options;
    options.compression = Compression::Gzip;
    options.apply.bottomLayer = bottom;
    return extract(testing::makeTar(entries, TarCompression::Gzip), options);
  }

  // Nothing was created outside the layer root.
  void expectOutsideUntouched() { EXPECT_TRUE(fs::is_empty(outside_)) << "something was written outside"; }

  actors::Runtime runtime_;
  fs::path root_;
  fs::path outside_;
};

TEST_F(ExtractTest, KeepsTypesOwnersModesXattrsTimesAndHardlinks) {
  TarEntry suid = TarEntry::file("bin/tool", "tool", 04755);
  suid.uid = 1000;
  suid.gid = 1001;
  suid.xattrs = {{"user.note", "hello"},
                 {"security.capability", std::string("\x01\x00\x00\x02", 4) + std::string(16, '\0')}};
  TarEntry dir = TarEntry::directory("data", 01777);
  dir.mtime = 1600000000;
  TarEntry chr = entry("dev/null", TarEntry::Type::CharDevice);
  chr.major = 1;
  chr.minor = 3;
  chr.mode = 0666;
  TarEntry link = TarEntry::symlink("bin/sh", "tool");
  link.uid = 7;
  TarEntry sparse = TarEntry::file("data/sparse", std::string(4 << 20, '\0'));
  sparse.content.replace(0, 5, "begin");
  sparse.content.replace(sparse.content.size() - 3, 3, "end");
  sparse.dataRegions = {{0, 5}, {static_cast<std::int64_t>(sparse.content.size() - 3), 3}};
  TarEntry forged = TarEntry::file("forged", "x");
  forged.xattrs = {{"trusted.overlay.redirect", "/etc"}};
  TarEntry setgidDir = TarEntry::directory("sg", 02775);
  setgidDir.gid = 50;
  std::vector<TarEntry> entries = {
      setgidDir,
      TarEntry::file("sg/root-file", "r", 0644),
      TarEntry::file("world", "w", 0666),
      TarEntry::directory("bin"),
      suid,
      link,
      entry("bin/tool2", TarEntry::Type::Hardlink, "bin/tool"),
      TarEntry::directory("dev"),
      chr,
      entry("dev/fifo", TarEntry::Type::Fifo),
      dir,
      TarEntry::file("data/file", "contents"),
      sparse,
      forged,
      TarEntry::file("a/very/" + std::string(200, 'n') + "/" + std::string(200, 'm'), "long")};
  auto done = extractTar(entries);
  AWAIT_READY(done);

  struct stat st {};
  ASSERT_EQ(0, ::lstat((root_ / "sg/root-file").c_str(), &st));
  EXPECT_EQ(0u, st.st_gid) << "not the setgid directory's group: the entry says root";
  ASSERT_EQ(0, ::lstat((root_ / "world").c_str(), &st));
  EXPECT_EQ(0666u, st.st_mode & 07777) << "the umask does not apply";
  ASSERT_EQ(0, ::lstat((root_ / "bin/tool").c_str(), &st));
  EXPECT_EQ(04755u, st.st_mode & 07777);
  EXPECT_EQ(1000u, st.st_uid);
  EXPECT_EQ(1001u, st.st_gid);
  EXPECT_EQ(2u, st.st_nlink);  // bin/tool2
  EXPECT_EQ(1700000000, st.st_mtime);
  EXPECT_EQ("hello", xattr(root_ / "bin/tool", "user.note").value_or("(none)"));
  EXPECT_TRUE(xattr(root_ / "bin/tool", "security.capability").has_value());
  EXPECT_EQ("tool", fs::read_symlink(root_ / "bin/sh").string());
  ASSERT_EQ(0, ::lstat((root_ / "bin/sh").c_str(), &st));
  EXPECT_EQ(7u, st.st_uid);
  ASSERT_EQ(0, ::lstat((root_ / "dev/null").c_str(), &st));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(makedev(1, 3), st.st_rdev);
  EXPECT_EQ(0666u, st.st_mode & 07777);
  ASSERT_EQ(0, ::lstat((root_ / "dev/fifo").c_str(), &st));
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ASSERT_EQ(0, ::lstat((root_ / "data").c_str(), &st));
  EXPECT_EQ(01777u, st.st_mode & 07777);
  EXPECT_EQ(1600000000, st.st_mtime) << "directory times are set last";
  ASSERT_EQ(0, ::lstat((root_ / "data/sparse").c_str(), &st));
  EXPECT_EQ(4 << 20, st.st_size);
  EXPECT_LT(st.st_blocks * 512, 1 << 20) << "the hole was written out";
  const std::string extracted = testing::readFile(root_ / "data/sparse");
  EXPECT_EQ(fetcher::sha256Digest(sparse.content), fetcher::sha256Digest(extracted))
      << "starts " << extracted.substr(0, 8) << ", ends " << extracted.substr(extracted.size() - 8);
  EXPECT_FALSE(xattr(root_ / "forged", "trusted.overlay.redirect").has_value());
  EXPECT_EQ("long", testing::readFile(root_ / entries.back().path));
  EXPECT_EQ(entries.size(), done->applied.entries);
  // "a", "a/very" and the long directory were implied.
  EXPECT_EQ((std::vector<std::string>{"a", "a/very", "a/very/" + std::string(200, 'n')}), done->applied.impliedDirs);
}

// The record the fixture checks, on what the headers alone do not tell:
// a directory implied inside a setgid one takes its group and bit, while
// the files in it take the group their entry says (as Docker's applier
// does); a whiteout in it; a directory replaced with all it held.
TEST_F(ExtractTest, TheRecordFollowsImpliedSetgidDirectoriesAndReplacements) {
  TarEntry setgidDir = TarEntry::directory("sg", 02775);
  setgidDir.gid = 50;
  std::vector<TarEntry> entries = {setgidDir,
                                   TarEntry::file("sg/implied/deeper/file", "in an implied dir"),
                                   TarEntry::file("sg/.wh.below", ""),
                                   TarEntry::directory("tree"),
                                   TarEntry::file("tree/a", "a"),
                                   TarEntry::file("tree-sibling", "kept"),
                                   TarEntry::file("tree/b/c", "c"),
                                   TarEntry::file("tree", "now a file"),
                                   entry("link", TarEntry::Type::Hardlink, "tree-sibling")};
  auto done = extractTar(entries);
  AWAIT_READY(done);
  struct stat st {};
  ASSERT_EQ(0, ::lstat((root_ / "sg/implied").c_str(), &st));
  EXPECT_EQ(50u, st.st_gid);
  EXPECT_NE(0u, st.st_mode & S_ISGID);
  ASSERT_EQ(0, ::lstat((root_ / "sg/implied/deeper/file").c_str(), &st));
  EXPECT_EQ(0u, st.st_gid) << "the entry says root's group";
  EXPECT_TRUE(isWhiteout(root_ / "sg/below"));
  EXPECT_EQ("now a file", testing::readFile(root_ / "tree"));
  auto record = readRecord((sandbox() / "record").string());
  ASSERT_TRUE(record.isSome());
  EXPECT_EQ(0u, record->count("tree/a")) << "the replaced directory's entries left the record";
  EXPECT_EQ(S_IFREG | 0644u, record->at("tree").mode);
}

TEST_F(ExtractTest, WhiteoutsBecomeOverlayWhiteoutsExceptInTheBottomLayer) {
  std::vector<TarEntry> entries = {
      TarEntry::directory("etc"),
      TarEntry::file("etc/.wh.passwd", ""),
      TarEntry::directory("opaque"),
      TarEntry::file("opaque/.wh..wh..opq", ""),
      TarEntry::file("opaque/readded", "new"),  // an opaque dir re-adding a file in the same layer
      TarEntry::file("keep/.wh.kept", ""),
      TarEntry::file("keep/kept", "mine"),  // this layer's own wins
      TarEntry::file(".wh.gone", ""),
      TarEntry::directory("gone"),  // deleted, then made again: opaque
      TarEntry::file(".wh..wh.plnk", "")};
  AWAIT_READY(extractTar(entries));
  EXPECT_TRUE(isWhiteout(root_ / "etc/passwd"));
  EXPECT_FALSE(fs::exists(root_ / "etc/.wh.passwd"));
  EXPECT_EQ("y", xattr(root_ / "opaque", "trusted.overlay.opaque").value_or("(none)"));
  EXPECT_EQ("new", testing::readFile(root_ / "opaque/readded"));
  EXPECT_EQ("mine", testing::readFile(root_ / "keep/kept"));
  EXPECT_TRUE(fs::is_directory(root_ / "gone"));
  EXPECT_EQ("y", xattr(root_ / "gone", "trusted.overlay.opaque").value_or("(none)"));
  EXPECT_FALSE(fs::exists(root_ / ".wh..wh.plnk"));

  fs::remove_all(root_);
  fs::create_directories(root_);
  AWAIT_READY(extractTar(entries, /*bottom=*/true));
  EXPECT_FALSE(fs::exists(fs::symlink_status(root_ / "etc/passwd")));
  EXPECT_FALSE(xattr(root_ / "opaque", "trusted.overlay.opaque").has_value());
  EXPECT_EQ("new", testing::readFile(root_ / "opaque/readded"));
}

TEST_F(ExtractTest, LaterEntriesReplaceEarlierOnesWithoutWritingThroughThem) {
  std::vector<TarEntry> entries = {TarEntry::file("x", "file"),
                                   TarEntry::directory("x"),
                                   TarEntry::file("x/inside", "1"),            // file -> dir
                                   TarEntry::symlink("x", outside_.string()),  // dir -> symlink
                                   TarEntry::file("x", "file again"),          // symlink -> file
                                   TarEntry::symlink("y", outside_.string()),
                                   TarEntry::directory("y")};
  AWAIT_READY(extractTar(entries));
  EXPECT_EQ("file again", testing::readFile(root_ / "x"));
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(root_ / "y")));
  expectOutsideUntouched();
}

// A file whose name is taken (made first, then looked at) replaces what is
// there: a dangling symlink is not followed out of the layer, and a name
// hardlinked to another keeps the other's bytes.
TEST_F(ExtractTest, AFileReplacesADanglingSymlinkAndAHardlinkedName) {
  std::vector<TarEntry> entries = {
      TarEntry::symlink("d", (outside_ / "new").string()), TarEntry::file("d", "inside"), TarEntry::file("a", "1"),
      entry("b", TarEntry::Type::Hardlink, "a"),           TarEntry::file("b", "2"),      TarEntry::file("a", "3")};
  AWAIT_READY(extractTar(entries));
  EXPECT_FALSE(fs::exists(fs::symlink_status(outside_ / "new")));
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(root_ / "d")));
  EXPECT_EQ("inside", testing::readFile(root_ / "d"));
  EXPECT_EQ("2", testing::readFile(root_ / "b"));
  EXPECT_EQ("3", testing::readFile(root_ / "a"));
  EXPECT_FALSE(fs::equivalent(root_ / "a", root_ / "b"));
  expectOutsideUntouched();
}

struct Escape {
  std::string name;
  std::vector<TarEntry> entries;
  std::string entry;  // the entry the error names
  std::string why;    // part of the message
};

TEST_F(ExtractTest, EachEscapeIsRejectedNamingTheEntry) {
  const std::string out = outside_.string();
  const std::vector<Escape> escapes = {
      {"dotdot", {TarEntry::file("a/../../outside/evil", "x")}, "a/../../outside/evil", "'..'"},
      {"absolute", {TarEntry::file(out + "/evil", "x")}, out + "/evil", "absolute"},
      {"symlink parent",
       {TarEntry::symlink("link", out), TarEntry::file("link/evil", "x")},
       "link/evil",
       "symlink 'link'"},
      {"symlink grandparent",
       {TarEntry::symlink("link", out), TarEntry::file("link/sub/evil", "x")},
       "link/sub/evil",
       "symlink 'link'"},
      {"hardlink outside", {entry("evil", TarEntry::Type::Hardlink, "../outside/target")}, "evil", "outside"},
      {"hardlink absolute", {entry("evil", TarEntry::Type::Hardlink, out + "/target")}, "evil", "outside"},
      {"hardlink through symlink",
       {TarEntry::symlink("link", out), entry("evil", TarEntry::Type::Hardlink, "link/target")},
       "evil",
       "symlink"},
      {"whiteout dotdot", {TarEntry::file("a/.wh...", "")}, "a/.wh...", "outside its directory"},
      {"whiteout through symlink",
       {TarEntry::symlink("link", out), TarEntry::file("link/.wh.target", "")},
       "link/.wh.target",
       "symlink 'link'"},
      {"opaque through symlink",
       {TarEntry::symlink("link", out), TarEntry::file("link/.wh..wh..opq", "")},
       "link/.wh..wh..opq",
       "symlink 'link'"},
  };
  testing::writeFile(outside_ / "target", "host file");
  for (const auto& escape : escapes) {
    SCOPED_TRACE(escape.name);
    fs::remove_all(root_);
    fs::create_directories(root_);
    auto done = extractTar(escape.entries);
    AWAIT_FAILED(done);
    EXPECT_EQ(ErrorKind::InvalidArgument, done.failure().kind) << done.failure().message;
    EXPECT_NE(std::string::npos, done.failure().message.find("entry '" + escape.entry + "'")) << done.failure().message;
    EXPECT_NE(std::string::npos, done.failure().message.find(escape.why)) << done.failure().message;
    EXPECT_EQ((std::vector<fs::path>{outside_ / "target"}),
              std::vector<fs::path>(fs::directory_iterator(outside_), fs::directory_iterator()));
    EXPECT_EQ("host file", testing::readFile(outside_ / "target"));
  }
}

TEST_F(ExtractTest, DiffIdIsCheckedAndCanBeSkippedForUncompressedLayers) {
  const std::vector<TarEntry> entries = {TarEntry::file("f", "data")};
  const std::string tar = testing::makeTar(entries, TarCompression::None);
  LayerStreamOptions options;
  options.compression = Compression::Gzip;
  options.expectedDiffId = fetcher::sha256Digest(tar);
  auto good = extract(testing::makeTar(entries, TarCompression::Gzip), options, 7);
  AWAIT_READY(good);
  EXPECT_EQ(options.expectedDiffId, good->diffId);

  fs::remove_all(root_);
  fs::create_directories(root_);
  options.expectedDiffId = fetcher::sha256Digest("something else");
  auto bad = extract(testing::makeTar(entries, TarCompression::Gzip), options);
  AWAIT_FAILED(bad);
  EXPECT_EQ(ErrorKind::DigestMismatch, bad.failure().kind);
  EXPECT_NE(std::string::npos, bad.failure().message.find(options.expectedDiffId)) << bad.failure().message;

  fs::remove_all(root_);
  fs::create_directories(root_);
  options.compression = Compression::None;
  options.hashDiffId = false;  // the puller verified the blob digest, which is the diffID
  auto unhashed = extract(tar, options);
  AWAIT_READY(unhashed);
  EXPECT_EQ(options.expectedDiffId, unhashed->diffId);
}

// The diffID is hashed beside the extraction, a piece at a time, while the
// decompressor's two buffers take turns and the producer reuses its own:
// a layer of many pieces, in each compression, hashes to its tar's digest
// whether the pool hashes (a runtime with threads to spare) or the job must
// (one blocking thread, which the job itself holds: waiting for the pool
// would hang).
TEST_F(ExtractTest, TheDiffIdOfALayerOfManyPiecesIsItsTarsDigest) {
  const std::string noise = testing::pseudoRandomBytes(3 << 20);
  const std::vector<TarEntry> entries = {TarEntry::file("noise", noise),
                                         TarEntry::file("zeros", std::string(2 << 20, '\0')),
                                         TarEntry::file("small", "x")};
  const std::string tar = testing::makeTar(entries, TarCompression::None);
  for (const std::size_t blockingThreads : {std::size_t{0}, std::size_t{1}}) {
    std::string buffer;  // the producer's, overwritten once each write is done; outlives the runtime's jobs
    actors::Runtime runtime(actors::Runtime::Options{.blockingThreads = blockingThreads});
    for (const auto& [compression, made] : {std::pair{Compression::None, TarCompression::None},
                                            {Compression::Gzip, TarCompression::Gzip},
                                            {Compression::Zstd, TarCompression::Zstd}}) {
      SCOPED_TRACE("blocking threads " + std::to_string(blockingThreads) + ", compression " +
                   std::to_string(static_cast<int>(compression)));
      fs::remove_all(root_);
      fs::create_directories(root_);
      LayerStreamOptions options;
      options.apply.what = "layer 'test'";
      options.compression = compression;
      options.expectedDiffId = fetcher::sha256Digest(tar);
      auto stream = LayerStream::start(runtime, root_.string(), options);
      const std::string blob = testing::makeTar(entries, made);
      // Chunks of 600 KiB: an uncompressed one is several pieces.
      for (std::size_t at = 0; at < blob.size(); at += 600 * 1024) {
        buffer.assign(blob, at, 600 * 1024);
        auto written = stream->write(buffer);
        AWAIT_READY(written);
        buffer.assign(buffer.size(), '!');
      }
      stream->end();
      auto result = stream->result();
      AWAIT_READY(result);
      EXPECT_EQ(options.expectedDiffId, result->diffId);
      EXPECT_EQ(noise, testing::readFile(root_ / "noise"));
    }
  }
}

// Big files are written with O_DIRECT (store/file_writer.hpp): in a
// layer, with an owner and mode to set afterwards, and as a sparse file,
// each keeps its bytes, and the record (checked against the disk by
// extract()) hashes what is on disk.
TEST_F(ExtractTest, BigFilesKeepTheirBytesOwnersAndHoles) {
  const std::string noise = testing::pseudoRandomBytes((9 << 20) + 321);
  TarEntry owned = TarEntry::file("owned", noise.substr(0, (8 << 20) + 4096));
  owned.uid = 1000;
  owned.gid = 1000;
  owned.mode = 0640;
  TarEntry sparse = TarEntry::file("sparse", std::string(24 << 20, '\0'));
  sparse.content.replace(0, 2 << 20, noise, 0, 2 << 20);
  sparse.content.replace(20 << 20, 1 << 20, noise, 0, 1 << 20);
  sparse.dataRegions = {{0, 2 << 20}, {20 << 20, 1 << 20}};
  auto done = extractTar({TarEntry::file("noise", noise), owned, sparse});
  AWAIT_READY(done);
  EXPECT_EQ(noise, testing::readFile(root_ / "noise"));
  EXPECT_EQ(owned.content, testing::readFile(root_ / "owned"));
  struct stat st {};
  ASSERT_EQ(0, ::lstat((root_ / "owned").c_str(), &st));
  EXPECT_EQ(1000u, st.st_uid);
  EXPECT_EQ(0640u, st.st_mode & 07777);
  ASSERT_EQ(0, ::lstat((root_ / "sparse").c_str(), &st));
  EXPECT_EQ(24 << 20, st.st_size);
  EXPECT_LT(st.st_blocks * 512, 4 << 20) << "the holes were written out";
  EXPECT_EQ(sparse.content, testing::readFile(root_ / "sparse"));
}

TEST_F(ExtractTest, BadBlobsFailClearly) {
  const std::vector<TarEntry> entries = {TarEntry::file("f", std::string(1 << 20, 'z'))};
  const std::string gz = testing::makeTar(entries, TarCompression::Gzip);

  LayerStreamOptions options;
  auto truncated = extract(gz.substr(0, gz.size() / 2), options);
  AWAIT_FAILED(truncated);
  EXPECT_EQ(ErrorKind::Corruption, truncated.failure().kind) << truncated.failure().message;
  EXPECT_NE(std::string::npos, truncated.failure().message.find("layer 'test'")) << truncated.failure().message;

  options.apply.limits.maxLayerBytes = 512 * 1024;  // the bomb: 1 MiB of 'z' in a few KiB
  auto bomb = extract(gz, options);
  AWAIT_FAILED(bomb);
  EXPECT_EQ(ErrorKind::ResourceExhausted, bomb.failure().kind) << bomb.failure().message;

  LayerStreamOptions plain;
  plain.compression = Compression::None;
  auto garbage = extract(std::string(4096, 'g'), plain);
  AWAIT_FAILED(garbage);
  EXPECT_EQ(ErrorKind::Corruption, garbage.failure().kind) << garbage.failure().message;

  LayerStreamOptions mismatch;  // says gzip, is zstd
  auto wrongType = extract(testing::makeTar(entries, TarCompression::Zstd), mismatch);
  AWAIT_FAILED(wrongType);
  EXPECT_EQ(ErrorKind::Corruption, wrongType.failure().kind) << wrongType.failure().message;

  LayerStreamOptions few;
  few.apply.limits.maxEntries = 2;
  auto many = extract(testing::makeTar({TarEntry::file("a", ""), TarEntry::file("b", ""), TarEntry::file("c", "")}),
                      few);
  AWAIT_FAILED(many);
  EXPECT_EQ(ErrorKind::ResourceExhausted, many.failure().kind) << many.failure().message;

  // A sparse file unpacks to its size: 2 MiB of holes in a few KiB of tar.
  TarEntry holes = TarEntry::file("holes", std::string(2 << 20, '\0'));
  holes.content.replace(0, 4, "data");
  holes.dataRegions = {{0, 4}};
  LayerStreamOptions smallLayers;
  smallLayers.apply.limits.maxLayerBytes = 1 << 20;
  auto sparse = extract(testing::makeTar({holes}), smallLayers);
  AWAIT_FAILED(sparse);
  EXPECT_EQ(ErrorKind::ResourceExhausted, sparse.failure().kind) << sparse.failure().message;
  EXPECT_NE(std::string::npos, sparse.failure().message.find("with entry 'holes' (2097152 bytes) its files are "
                                                             "2097152 bytes, over the layer limit of 1048576"))
      << sparse.failure().message;
  // Each under the limit, together over it.
  TarEntry half = holes;
  half.content.resize(600 << 10);
  half.path = "first";
  TarEntry other = half;
  other.path = "second";
  auto together = extract(testing::makeTar({half, other}), smallLayers);
  AWAIT_FAILED(together);
  EXPECT_EQ(ErrorKind::ResourceExhausted, together.failure().kind) << together.failure().message;
  EXPECT_NE(std::string::npos, together.failure().message.find("with entry 'second'")) << together.failure().message;

  LayerStreamOptions shortPaths;
  shortPaths.apply.limits.maxPathBytes = 10;
  auto longPath = extract(testing::makeTar({TarEntry::file("abcdefghijklmnop", "")}), shortPaths);
  AWAIT_FAILED(longPath);
  EXPECT_EQ(ErrorKind::InvalidArgument, longPath.failure().kind) << longPath.failure().message;
  expectOutsideUntouched();
}

TEST_F(ExtractTest, AnAbortedDownloadStopsTheJobAndAFailedJobStopsTheDownload) {
  LayerStreamOptions options;
  options.apply.what = "layer 'test'";
  auto stream = LayerStream::start(runtime_, root_.string(), options);
  const std::string gz = testing::makeTar({TarEntry::file("f", std::string(1 << 20, 'q'))});
  AWAIT_READY(stream->write(std::string_view(gz).substr(0, 100)));
  stream->abort(Error(ErrorKind::Unavailable, "connection reset"));
  auto result = stream->result();
  AWAIT_FAILED(result);
  EXPECT_EQ("connection reset", result.failure().message);
  AWAIT_FAILED(stream->write("more"));

  fs::remove_all(root_);
  fs::create_directories(root_);
  auto failing = LayerStream::start(runtime_, root_.string(), options);
  auto first = failing->write(std::string(1024, 'x'));  // not gzip
  AWAIT_FAILED(first);
  EXPECT_EQ(ErrorKind::Corruption, first.failure().kind);
  AWAIT_FAILED(failing->result());
}

TEST(CleanEntryPathTest, NormalisesAndRejects) {
  EXPECT_EQ("a/b", *actors::path::cleanRelative("./a//b/"));
  EXPECT_EQ("", *actors::path::cleanRelative("./"));
  EXPECT_EQ("a/.../b", *actors::path::cleanRelative("a/.../b"));
  EXPECT_TRUE(actors::path::cleanRelative("/etc/passwd").isError());
  EXPECT_TRUE(actors::path::cleanRelative("a/../b").isError());
  EXPECT_TRUE(actors::path::cleanRelative("..").isError());
}

}  // namespace
}  // namespace prov::store
