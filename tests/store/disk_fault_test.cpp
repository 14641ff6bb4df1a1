// The store's disk writes under "fail the N-th call, for every N"
// (tests/support/faulty_disk.hpp): each run either succeeds or fails with an
// error that names the path and the errno, and leaves no temp file, no half
// state, and a retry without faults that succeeds.

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "actors/fs.hpp"
#include "messages/image.pb.h"
#include "store/atomic_file.hpp"
#include "store/metadata_manager.hpp"
#include "testkit/files.hpp"
#include "tests/support/await.hpp"
#include "tests/support/faulty_disk.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using actors::Future;
using actors::Nothing;
using actors::Try;
using actors::fs::DiskCall;
using testing::FaultyDisk;

using testing::treeOf;

// `message` names the failed call's target and says ENOSPC's text.
void expectNamesTheFault(const std::string& message, const std::string& path, long n) {
  EXPECT_NE(std::string::npos, message.find(path)) << "call " << n << ": " << message;
  EXPECT_NE(std::string::npos, message.find("No space left on device")) << "call " << n << ": " << message;
}

class DiskFaultTest : public testing::TemporaryDirectoryTest {};

TEST_F(DiskFaultTest, AnAtomicWriteFaultLeavesTheOldFileAndNoTempFile) {
  FaultyDisk disk;
  const fs::path file = sandbox() / "index";
  Try<Nothing> written = Nothing{};
  const long count = testing::fault::sweep(
      disk, std::nullopt, ENOSPC, [&] { testing::writeFile(file, "old"); },
      [&] { written = writeFileAtomically(file, "new"); },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(failedCall) << "call " << n;
        ASSERT_TRUE(written.isError()) << "call " << n << " (" << *failedCall << ") failed and the write succeeded";
        expectNamesTheFault(written.error().message, file.string(), n);
        // Old or new content (the directory fsync may fail after the rename),
        // and nothing else in the directory.
        const std::string content = testing::readFile(file);
        EXPECT_TRUE(content == "old" || content == "new") << "call " << n << ": " << content;
        EXPECT_EQ(std::vector<std::string>{"index"}, treeOf(sandbox())) << "call " << n;
        ASSERT_TRUE(writeFileAtomically(file, "retried").isSome());
        EXPECT_EQ("retried", testing::readFile(file));
      });
  EXPECT_EQ(6, count);  // open, write, fsync, rename, open and fsync of the directory
}

TEST_F(DiskFaultTest, ARemoveTreeFaultNamesThePathAndARetryFinishes) {
  FaultyDisk disk;
  const fs::path tree = sandbox() / "tree";
  Try<bool> removed = false;
  const long count = testing::fault::sweep(
      disk, std::nullopt, EIO,
      [&] {
        fs::create_directories(tree / "a" / "b");
        testing::writeFile(tree / "a" / "b" / "file", "x");
        testing::writeFile(tree / "top", "y");
        fs::create_symlink("/etc", tree / "a" / "link");
      },
      [&] { removed = actors::fs::removeTree(tree.string()); },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(failedCall) << "call " << n;
        ASSERT_TRUE(removed.isError()) << "call " << n;
        EXPECT_NE(std::string::npos, removed.error().message.find(tree.string())) << removed.error().message;
        EXPECT_NE(std::string::npos, removed.error().message.find("Input/output error")) << removed.error().message;
        EXPECT_TRUE(fs::exists("/etc/hostname"));  // never through the symlink
        auto retried = actors::fs::removeTree(tree.string());
        ASSERT_TRUE(retried.isSome()) << retried.error().message;
        EXPECT_FALSE(fs::exists(tree)) << "call " << n;
      });
  EXPECT_GE(count, 8);
}

TEST_F(DiskFaultTest, AMakeDirectoriesFaultNamesTheDirectory) {
  FaultyDisk disk;
  const fs::path deep = sandbox() / "a" / "b" / "c";
  Try<Nothing> made = Nothing{};
  testing::fault::sweep(
      disk, DiskCall::Mkdir, ENOSPC, [&] { fs::remove_all(sandbox() / "a"); },
      [&] { made = actors::fs::makeDirectories(deep.string()); },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(failedCall) << "call " << n;
        ASSERT_TRUE(made.isError()) << "call " << n;
        EXPECT_NE(std::string::npos, made.error().message.find("No space left on device")) << made.error().message;
        EXPECT_NE(std::string::npos, made.error().message.find(sandbox().string())) << made.error().message;
        ASSERT_TRUE(actors::fs::makeDirectories(deep.string()).isSome());
        EXPECT_TRUE(fs::is_directory(deep));
      });
}

// New levels are made from the top down, one mkdir each and none failing;
// what was there is said; a file in the way, a missing base, and a fault at
// each mkdir give errors that name the directory.
TEST_F(DiskFaultTest, MakeDirectoriesBelowMakesEachNewLevelOnceFromTheTop) {
  FaultyDisk disk;
  const fs::path base = sandbox() / "base";
  fs::create_directories(base);
  const fs::path deep = base / "a" / "b" / "c";
  disk.disarm();
  auto made = actors::fs::makeDirectoriesBelow(base.string(), deep.string());
  ASSERT_TRUE(made.isSome()) << made.error().message;
  EXPECT_FALSE(*made);
  EXPECT_TRUE(fs::is_directory(deep));
  EXPECT_EQ(3, disk.calls(DiskCall::Mkdir));  // makeDirectories takes 5: c and b fail first

  auto again = actors::fs::makeDirectoriesBelow(base.string(), deep.string());
  ASSERT_TRUE(again.isSome()) << again.error().message;
  EXPECT_TRUE(*again);
  auto slashed = actors::fs::makeDirectoriesBelow(base.string(), deep.string() + "/");  // the same directory
  ASSERT_TRUE(slashed.isSome()) << slashed.error().message;
  EXPECT_TRUE(*slashed);
  auto newSlashed = actors::fs::makeDirectoriesBelow(base.string(), (base / "d" / "e").string() + "//");
  ASSERT_TRUE(newSlashed.isSome()) << newSlashed.error().message;
  EXPECT_FALSE(*newSlashed);
  EXPECT_TRUE(fs::is_directory(base / "d" / "e"));

  testing::writeFile(base / "file", "x");
  for (const fs::path& blocked : {base / "file", base / "file" / "d"}) {
    auto refused = actors::fs::makeDirectoriesBelow(base.string(), blocked.string());
    ASSERT_TRUE(refused.isError()) << blocked;
    EXPECT_NE(std::string::npos, refused.error().message.find(blocked.string())) << refused.error().message;
    EXPECT_NE(std::string::npos, refused.error().message.find("Not a directory")) << refused.error().message;
  }

  const fs::path missing = sandbox() / "missing";
  auto fromNothing = actors::fs::makeDirectoriesBelow(missing.string(), (missing / "x" / "y").string());
  ASSERT_TRUE(fromNothing.isSome()) << fromNothing.error().message;
  EXPECT_FALSE(*fromNothing);
  EXPECT_TRUE(fs::is_directory(missing / "x" / "y"));

  auto outside = actors::fs::makeDirectoriesBelow(base.string(), (sandbox() / "elsewhere").string());
  ASSERT_TRUE(outside.isError());
  EXPECT_EQ(actors::ErrorKind::InvalidArgument, outside.error().kind);
  EXPECT_FALSE(fs::exists(sandbox() / "elsewhere"));

  Try<bool> swept = false;
  const long count = testing::fault::sweep(
      disk, DiskCall::Mkdir, ENOSPC, [&] { fs::remove_all(base / "a"); },
      [&] { swept = actors::fs::makeDirectoriesBelow(base.string(), deep.string()); },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(failedCall) << "call " << n;
        ASSERT_TRUE(swept.isError()) << "call " << n;
        // The level that failed: a, a/b, then a/b/c.
        fs::path level = base;
        for (long i = 0; i < n; ++i) level /= std::string(1, static_cast<char>('a' + i));
        EXPECT_NE(std::string::npos, swept.error().message.find("'" + level.string() + "'")) << swept.error().message;
        EXPECT_NE(std::string::npos, swept.error().message.find("No space left on device")) << swept.error().message;
        auto retried = actors::fs::makeDirectoriesBelow(base.string(), deep.string());
        ASSERT_TRUE(retried.isSome()) << retried.error().message;
        EXPECT_TRUE(fs::is_directory(deep));
      });
  EXPECT_EQ(3, count);
}

// The image index: a put whose write fails fails, and the index on disk is
// the one before it or the one after it, never a broken one.
TEST_F(DiskFaultTest, AnIndexWriteFaultFailsThePutAndKeepsTheIndexWhole) {
  actors::Runtime runtime;
  FaultyDisk disk;
  const std::string storeDir = sandbox().string();
  messages::StoredImage first;
  first.set_key("first");
  messages::StoredImage second;
  second.set_key("second");
  std::optional<MetadataManager> index;
  Future<messages::StoredImage> put;
  const long count = testing::fault::sweep(
      disk, std::nullopt, ENOSPC,
      [&] {
        index.reset();
        fs::remove(sandbox() / "images");
        index.emplace(runtime, storeDir);
        AWAIT_READY(index->recover());
        AWAIT_READY(index->put(first));
      },
      [&] {
        put = index->put(second);
        put.waitFor(testing::kDefaultAwait);
      },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(failedCall) << "call " << n;
        ASSERT_TRUE(put.isFailed()) << "call " << n;
        expectNamesTheFault(put.failure().message, storeDir, n);
        index.reset();
        MetadataManager reopened(runtime, storeDir);
        auto entries = reopened.recover();
        AWAIT_READY(entries);
        AWAIT_EXPECT_EQ(std::string(), reopened.recoveryWarning());
        ASSERT_GE(entries->size(), 1u) << "call " << n;
        EXPECT_EQ(std::vector<std::string>{"images"}, treeOf(sandbox())) << "call " << n;
      });
  EXPECT_GE(count, 6);
}

}  // namespace
}  // namespace prov::store
