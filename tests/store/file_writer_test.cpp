// FileWriter (store/file_writer.hpp): a big file's bytes reach the disk
// without the page cache, and whatever stops that (a hole, a file system
// without direct I/O, a refused write) leaves the same bytes on disk; a
// failed write is reported, and the next file does not inherit it.

#include "store/file_writer.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "actors/fs.hpp"
#include "testkit/files.hpp"
#include "tests/support/faulty_disk.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using actors::fs::DiskCall;
using actors::fs::Fd;
using testing::FaultyDisk;

// How many of the file's pages are in the page cache.
std::size_t cachedPages(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || st.st_size == 0) return 0;
  const std::size_t size = static_cast<std::size_t>(st.st_size);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (map == MAP_FAILED) return 0;
  const long page = ::sysconf(_SC_PAGESIZE);
  std::vector<unsigned char> resident((size + page - 1) / page);
  const int rc = ::mincore(map, size, resident.data());
  ::munmap(map, size);
  if (rc != 0) return 0;
  return static_cast<std::size_t>(
      std::count_if(resident.begin(), resident.end(), [](unsigned char c) { return c & 1; }));
}

int statusFlags(int fd) { return ::fcntl(fd, F_GETFL); }

class FileWriterTest : public testing::TemporaryDirectoryTest {
 protected:
  Fd create(const fs::path& path) {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    EXPECT_TRUE(fd.valid()) << path << ": " << std::strerror(errno);
    return fd;
  }

  // Writes `bytes` in pieces of uneven sizes, as an inflater hands them
  // over; the writer's result.
  static bool writeInPieces(FileWriter& writer, const std::string& bytes, std::size_t from = 0) {
    const std::size_t sizes[] = {65536, 1, 4095, 300000, 8192, 777777};
    std::size_t at = from;
    for (std::size_t i = 0; at < bytes.size(); ++i) {
      const std::size_t n = std::min(sizes[i % std::size(sizes)], bytes.size() - at);
      if (!writer.write(bytes.data() + at, n, static_cast<std::int64_t>(at))) return false;
      at += n;
    }
    return true;
  }

  DirectWrites writes_;
};

TEST_F(FileWriterTest, ABigFileSkipsThePageCacheAndKeepsEveryByte) {
  const fs::path path = sandbox() / "big";
  const std::string bytes = testing::pseudoRandomBytes(9 * (1 << 20) + 1234, 1);  // not a multiple of any alignment
  Fd fd = create(path);
  {
    FileWriter writer(fd.get(), static_cast<std::int64_t>(bytes.size()), writes_);
    ASSERT_TRUE(writer.direct()) << "the sandbox's file system (" << sandbox() << ") should take direct I/O";
    EXPECT_NE(0, statusFlags(fd.get()) & O_DIRECT);
    ASSERT_TRUE(writeInPieces(writer, bytes)) << std::strerror(errno);
    ASSERT_TRUE(writer.finish()) << std::strerror(errno);
    EXPECT_EQ(static_cast<std::int64_t>(bytes.size()), writer.end());
  }
  EXPECT_EQ(0, statusFlags(fd.get()) & O_DIRECT) << "the tail is written through the page cache";
  fd.reset();
  // Only the tail's page went through the page cache.
  EXPECT_LE(cachedPages(path), 1u);
  EXPECT_EQ(bytes, testing::readFile(path));
}

TEST_F(FileWriterTest, ASmallFileGoesThroughThePageCache) {
  const fs::path path = sandbox() / "small";
  const std::string bytes = testing::pseudoRandomBytes(FileWriter::kDirectBytes - 1, 2);
  Fd fd = create(path);
  {
    FileWriter writer(fd.get(), static_cast<std::int64_t>(bytes.size()), writes_);
    EXPECT_FALSE(writer.direct());
    EXPECT_EQ(0, statusFlags(fd.get()) & O_DIRECT);
    ASSERT_TRUE(writeInPieces(writer, bytes));
    ASSERT_TRUE(writer.finish());
  }
  fd.reset();
  EXPECT_EQ(bytes, testing::readFile(path));
}

// A hole after some direct writes: the rest is written through the page
// cache, the hole stays a hole, and every byte is where the tar put it.
TEST_F(FileWriterTest, AHoleEndsDirectWritesAndStaysAHole) {
  const fs::path path = sandbox() / "sparse";
  const std::size_t size = 16 << 20;
  const std::size_t holeFrom = (3 << 20) + 5, holeTo = 12 << 20;
  std::string bytes = testing::pseudoRandomBytes(size, 3);
  std::fill(bytes.begin() + holeFrom, bytes.begin() + holeTo, '\0');
  Fd fd = create(path);
  {
    FileWriter writer(fd.get(), static_cast<std::int64_t>(size), writes_);
    ASSERT_TRUE(writer.direct());
    ASSERT_TRUE(writer.write(bytes.data(), holeFrom, 0));
    EXPECT_TRUE(writer.direct());
    ASSERT_TRUE(writer.write(bytes.data() + holeTo, size - holeTo, static_cast<std::int64_t>(holeTo)));
    EXPECT_FALSE(writer.direct());
    EXPECT_EQ(0, statusFlags(fd.get()) & O_DIRECT);
    ASSERT_TRUE(writer.finish());
    EXPECT_EQ(static_cast<std::int64_t>(size), writer.end());
  }
  struct stat st {};
  ASSERT_EQ(0, ::fstat(fd.get(), &st));
  EXPECT_LT(st.st_blocks * 512, static_cast<blkcnt_t>(size - (holeTo - holeFrom) + (1 << 20)))
      << "the hole was written out";
  fd.reset();
  EXPECT_EQ(bytes, testing::readFile(path));
}

// A piece that goes back over bytes already written (a tar may do it): the
// later bytes win, as with plain writes.
TEST_F(FileWriterTest, APieceOverBytesAlreadyWrittenWins) {
  const fs::path path = sandbox() / "rewritten";
  std::string bytes = testing::pseudoRandomBytes(10 << 20, 4);
  const std::string again = testing::pseudoRandomBytes(5000, 5);
  Fd fd = create(path);
  {
    FileWriter writer(fd.get(), static_cast<std::int64_t>(bytes.size()), writes_);
    ASSERT_TRUE(writeInPieces(writer, bytes));
    ASSERT_TRUE(writer.write(again.data(), again.size(), 100));
    EXPECT_FALSE(writer.direct());
    ASSERT_TRUE(writer.finish());
  }
  fd.reset();
  bytes.replace(100, again.size(), again);
  EXPECT_EQ(bytes, testing::readFile(path));
}

// tmpfs reports no direct I/O alignment (statx): plain writes.
TEST_F(FileWriterTest, AFileSystemWithoutDirectIoGetsPlainWrites) {
  const fs::path mountPoint = sandbox() / "tmpfs";
  fs::create_directories(mountPoint);
  ASSERT_EQ(0, ::mount("tmpfs", mountPoint.c_str(), "tmpfs", 0, "size=64m")) << std::strerror(errno);
  struct Unmount {
    fs::path at;
    ~Unmount() { ::umount2(at.c_str(), MNT_DETACH); }
  } unmount{mountPoint};
  const fs::path path = mountPoint / "big";
  const std::string bytes = testing::pseudoRandomBytes(9 << 20, 6);
  Fd fd = create(path);
  {
    FileWriter writer(fd.get(), static_cast<std::int64_t>(bytes.size()), writes_);
    EXPECT_FALSE(writer.direct());
    ASSERT_TRUE(writeInPieces(writer, bytes));
    ASSERT_TRUE(writer.finish());
  }
  fd.reset();
  EXPECT_EQ(bytes, testing::readFile(path));
}

// A file system that opens the file for direct I/O but refuses a direct
// write (EINVAL, once): that write and the rest go through the page cache.
TEST_F(FileWriterTest, ARefusedDirectWriteIsMadeAgainThroughThePageCache) {
  FaultyDisk disk;
  const fs::path path = sandbox() / "refused";
  const std::string bytes = testing::pseudoRandomBytes(12 << 20, 7);
  Fd fd = create(path);
  disk.failNth(DiskCall::Write, 2, EINVAL);
  {
    FileWriter writer(fd.get(), static_cast<std::int64_t>(bytes.size()), writes_);
    ASSERT_TRUE(writer.direct());
    ASSERT_TRUE(writeInPieces(writer, bytes)) << std::strerror(errno);
    ASSERT_TRUE(writer.finish()) << std::strerror(errno);
  }
  ASSERT_TRUE(disk.failed()) << "no write was refused";
  EXPECT_EQ(0, statusFlags(fd.get()) & O_DIRECT);
  fd.reset();
  EXPECT_EQ(bytes, testing::readFile(path));
}

// A direct write that fails (ENOSPC) is reported with its errno, at a
// later write or at finish(); the next file's writer starts clean.
TEST_F(FileWriterTest, AFailedDirectWriteIsReportedAndNotInherited) {
  FaultyDisk disk;
  // Twelve direct writes and a tail through the page cache: each fails in
  // turn.
  const std::string bytes = testing::pseudoRandomBytes((12 << 20) + 100, 8);
  for (long n = 1; n <= 13; ++n) {
    SCOPED_TRACE("write " + std::to_string(n) + " fails");
    const fs::path path = sandbox() / ("full-" + std::to_string(n));
    Fd fd = create(path);
    disk.failNth(DiskCall::Write, n, ENOSPC);
    {
      FileWriter writer(fd.get(), static_cast<std::int64_t>(bytes.size()), writes_);
      ASSERT_TRUE(writer.direct());
      errno = 0;
      const bool ok = writeInPieces(writer, bytes) && writer.finish();
      EXPECT_FALSE(ok);
      EXPECT_EQ(ENOSPC, errno);
    }
    ASSERT_TRUE(disk.failed());
    disk.disarm();
    const fs::path next = sandbox() / ("next-" + std::to_string(n));
    Fd nextFd = create(next);
    {
      FileWriter writer(nextFd.get(), static_cast<std::int64_t>(bytes.size()), writes_);
      ASSERT_TRUE(writeInPieces(writer, bytes)) << std::strerror(errno);
      ASSERT_TRUE(writer.finish()) << std::strerror(errno);
    }
    nextFd.reset();
    EXPECT_EQ(bytes, testing::readFile(next));
  }
}

// A direct write that fails on the writing thread is reported by the
// writer's next call that waits for the thread: taking the next buffer
// (when the failure is already in), or else leaving direct writes at the
// hole that follows, which waits for the writes in flight. Nothing is
// written after it.
TEST_F(FileWriterTest, AFailedDirectWriteIsReportedByTheNextCallThatWaits) {
  FaultyDisk disk;
  const std::string bytes = testing::pseudoRandomBytes(12 << 20, 9);
  const fs::path path = sandbox() / "holed";
  Fd fd = create(path);
  disk.failNth(DiskCall::Write, 1, ENOSPC);
  {
    FileWriter writer(fd.get(), static_cast<std::int64_t>(bytes.size()), writes_);
    ASSERT_TRUE(writer.direct());
    // One buffer's worth: handed to the thread, which fails it.
    errno = 0;
    if (writer.write(bytes.data(), 1 << 20, 0)) {
      EXPECT_FALSE(writer.write(bytes.data() + (8 << 20), 1 << 20, 8 << 20)) << "the hole after it";
    }
    EXPECT_EQ(ENOSPC, errno);
  }
  ASSERT_TRUE(disk.failed());
  EXPECT_EQ(1, disk.calls(DiskCall::Write)) << "a write after the failed one";
}

}  // namespace
}  // namespace prov::store
