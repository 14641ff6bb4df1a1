// A content directory checked against its record (store/layer_record.hpp):
// each kind of damage named, a damaged record told apart, a layer from
// before records adopted, a layer removed mid-check reported gone.

#include "store/layer_record.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "testkit/files.hpp"
#include "tests/support/temp_dir.hpp"

// The reference: xxhash's own XXH3, as the test is built (for any x86-64:
// SSE2's loop). ContentHash may take AVX2's (content_hash_avx2.cpp).
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace prov::store {
namespace {

namespace fs = std::filesystem;

class LayerRecordTest : public testing::TemporaryDirectoryTest {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    rootfs_ = sandbox() / "layer" / "rootfs";
    fs::create_directories(rootfs_ / "etc");
    write("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    write("etc/hosts", "127.0.0.1 localhost\n");
    write("etc/gone", "soon gone");
    fs::create_symlink("passwd", rootfs_ / "etc/link");
    ASSERT_EQ(0, ::mknod((rootfs_ / "etc/null").c_str(), S_IFCHR | 0666, makedev(1, 3)));
  }

  void write(const std::string& rel, const std::string& content) {
    std::ofstream(rootfs_ / rel, std::ios::binary | std::ios::trunc) << content;
  }

  std::string record() const { return (sandbox() / "layer" / "record").string(); }

  // The tree recorded as it stands now, as a commit would.
  void commit() {
    auto made = recordTree(rootfs_.string());
    ASSERT_TRUE(made.isSome()) << made.error().message;
    ASSERT_TRUE(writeRecord(record(), *made, true).isSome());
  }

  // A records-since time after the tree was made (it is from before
  // records) and one before it (it was committed with one).
  static timespec later() { return timespec{::time(nullptr) + 3600, 0}; }
  static timespec earlier() { return timespec{0, 0}; }

  static std::vector<std::string> named(const ContentCheck& check) {
    std::vector<std::string> lines;
    for (const auto& damage : check.damage) lines.push_back(damage.path + ": " + damage.what);
    return lines;
  }

  fs::path rootfs_;
};

// ContentHash is XXH3-64 whatever the CPU and however the bytes are split:
// sizes around XXH3's internal block and stripe lengths, in one update and
// in uneven pieces, and holes as zeros.
TEST(ContentHashTest, IsXxh3WhicheverLoopRunsAndHoweverTheBytesAreSplit) {
  const std::string bytes = testing::pseudoRandomBytes((1 << 20) + 4099);
  ContentHash hash;
  for (const std::size_t size :
       {std::size_t{0}, std::size_t{1}, std::size_t{16}, std::size_t{128}, std::size_t{240}, std::size_t{241},
        std::size_t{1024}, std::size_t{1025}, std::size_t{64 * 1024 + 3}, bytes.size()}) {
    SCOPED_TRACE(size);
    const std::uint64_t expected = XXH3_64bits(bytes.data(), size);
    hash.reset();
    hash.update(bytes.data(), size);
    EXPECT_EQ(expected, hash.digest());
    hash.reset();
    for (std::size_t at = 0, piece = 1; at < size; at += piece, piece = piece * 3 + 1) {
      hash.update(bytes.data() + at, std::min(piece, size - at));
    }
    EXPECT_EQ(expected, hash.digest());
  }
  const std::string zeros(100000, '\0');
  hash.reset();
  hash.update("a", 1);
  hash.zeros(zeros.size());
  EXPECT_EQ(XXH3_64bits(("a" + zeros).data(), zeros.size() + 1), hash.digest());
}

TEST_F(LayerRecordTest, AWholeTreeMatchesAndEachDamageIsNamed) {
  commit();
  ContentCheck clean = checkContent(rootfs_.string(), earlier());
  EXPECT_TRUE(clean.ok()) << ::testing::PrintToString(named(clean)) << clean.error;
  EXPECT_EQ(7u, clean.entries);  // the root, etc, five entries in it
  EXPECT_EQ(fs::file_size(rootfs_ / "etc/passwd") + fs::file_size(rootfs_ / "etc/hosts") + 9, clean.bytes);

  fs::resize_file(rootfs_ / "etc/passwd", 0);                          // truncated
  write("etc/hosts", std::string("127.0.0.2 localhost\n"));            // same size, other bytes
  fs::remove(rootfs_ / "etc/gone");                                    // deleted
  write("etc/added", "new");                                           // added
  fs::permissions(rootfs_ / "etc", fs::perms(0700));                   // mode
  ASSERT_EQ(0, ::lchown((rootfs_ / "etc/link").c_str(), 1000, 1000));  // owner
  fs::remove(rootfs_ / "etc/null");
  write("etc/null", "");  // type
  ContentCheck damaged = checkContent(rootfs_.string(), earlier());
  EXPECT_EQ("", damaged.error);
  EXPECT_FALSE(damaged.ok());
  EXPECT_EQ((std::vector<std::string>{
                "/etc: mode 0700, recorded 0755",
                "/etc/added: added (a file the record does not have)",
                "/etc/gone: missing (a file)",
                "/etc/hosts: content differs from the record",
                "/etc/link: owner 1000:1000, recorded 0:0",
                "/etc/null: now a file, recorded as a character device",
                "/etc/passwd: size 0, recorded 26",
            }),
            named(damaged));
}

TEST_F(LayerRecordTest, ADamagedRecordIsToldFromADamagedTree) {
  commit();
  std::string bytes = testing::readFile(record());
  bytes[bytes.size() / 2] ^= 0x01;
  std::ofstream(record(), std::ios::binary | std::ios::trunc) << bytes;
  ContentCheck check = checkContent(rootfs_.string(), earlier());
  EXPECT_FALSE(check.ok());
  EXPECT_TRUE(check.damage.empty());
  EXPECT_NE(std::string::npos, check.error.find("is damaged")) << check.error;
  EXPECT_NE(std::string::npos, check.error.find(record())) << check.error;
}

// The migration: a layer committed before records has none. Its first
// check records it as it is and says so; later checks find changes.
TEST_F(LayerRecordTest, ALayerFromBeforeRecordsIsAdoptedThenChecked) {
  ASSERT_FALSE(fs::exists(record()));
  ContentCheck lost = checkContent(rootfs_.string(), earlier());
  EXPECT_FALSE(lost.ok()) << "committed since records began: its record was lost";
  EXPECT_NE(std::string::npos, lost.error.find("record '" + record() + "' is missing")) << lost.error;
  EXPECT_FALSE(fs::exists(record()));
  ContentCheck first = checkContent(rootfs_.string(), later());
  EXPECT_TRUE(first.adopted);
  EXPECT_TRUE(first.ok());
  EXPECT_EQ(7u, first.entries);
  ASSERT_TRUE(fs::exists(record()));
  EXPECT_TRUE(checkContent(rootfs_.string(), earlier()).ok());
  fs::resize_file(rootfs_ / "etc/hosts", 0);
  ContentCheck later = checkContent(rootfs_.string(), earlier());
  EXPECT_FALSE(later.adopted);
  EXPECT_EQ((std::vector<std::string>{"/etc/hosts: size 0, recorded 20"}), named(later));
}

// A directory that is not there is an error; the store tells it from one
// image GC removed meanwhile (StoreCheck, checkImages).
TEST_F(LayerRecordTest, AMissingDirectoryIsAnError) {
  commit();
  fs::remove_all(sandbox() / "layer");
  ContentCheck check = checkContent(rootfs_.string(), earlier());
  EXPECT_FALSE(check.gone);
  EXPECT_FALSE(check.ok());
  EXPECT_NE(std::string::npos, check.error.find("is missing")) << check.error;
}

// refreshRecord (what settling implied directories calls) takes the named
// entries from the disk again and leaves the others as recorded.
TEST_F(LayerRecordTest, RefreshTakesOnlyTheNamedEntriesAgain) {
  commit();
  fs::permissions(rootfs_ / "etc", fs::perms(0711));
  fs::resize_file(rootfs_ / "etc/hosts", 0);
  ASSERT_TRUE(refreshRecord(rootfs_.string(), {"etc"}).isSome());
  EXPECT_EQ((std::vector<std::string>{"/etc/hosts: size 0, recorded 20"}),
            named(checkContent(rootfs_.string(), earlier())));
}

}  // namespace
}  // namespace prov::store
