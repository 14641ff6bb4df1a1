// The copy backend's own promises: never writing through a symlink a lower
// layer left, type changes, hardlinks, metadata, sparse files, cleanup.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "actors/fs.hpp"
#include "backend/backend.hpp"
#include "testkit/files.hpp"
#include "tests/support/await.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::backend {
namespace {

namespace fs = std::filesystem;
using prov::testing::makeDirectory;
using prov::testing::makeSymlink;
using prov::testing::readFile;
using prov::testing::writeFile;

class CopyBackendTest : public prov::testing::TemporaryDirectoryTest {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    auto created = createBackend(runtime_, kCopy);
    ASSERT_TRUE(created.isSome());
    copy_ = std::move(*created);
  }
  void TearDown() override {
    copy_.reset();
    TemporaryDirectoryTest::TearDown();
  }
  std::string path(const std::string& relative) { return (sandbox() / relative).string(); }
  Future<RootfsInfo> provision(const std::vector<std::string>& layers) {
    std::vector<std::string> full;
    for (const auto& l : layers) full.push_back(path(l));
    return copy_->provision(full, path("rootfs"), path("backend"));
  }
  struct stat lstatOf(const std::string& relative) {
    struct stat st {};
    EXPECT_EQ(0, ::lstat(path(relative).c_str(), &st)) << relative;
    return st;
  }

  actors::Runtime runtime_;
  std::unique_ptr<Backend> copy_;
};

TEST_F(CopyBackendTest, SymlinkToOutsideNeverRedirectsACopy) {
  // Mesos ROOT_..._Overwrite: a lower layer's symlink points outside the
  // rootfs; the next layer has a directory and a file at that path.
  makeDirectory(path("host/dir"));
  writeFile(path("host/victim"), "host data");
  makeSymlink(path("host/dir"), path("l1/bad"));
  makeSymlink(path("host/victim"), path("l1/link"));
  writeFile(path("l2/bad/file"), "inside");
  writeFile(path("l2/link"), "replaced");
  AWAIT_READY(provision({"l1", "l2"}));
  EXPECT_TRUE(S_ISDIR(lstatOf("rootfs/bad").st_mode));
  EXPECT_EQ("inside", readFile(path("rootfs/bad/file")));
  EXPECT_TRUE(S_ISREG(lstatOf("rootfs/link").st_mode));
  EXPECT_EQ("replaced", readFile(path("rootfs/link")));
  EXPECT_FALSE(fs::exists(path("host/dir/file")));
  EXPECT_EQ("host data", readFile(path("host/victim")));
}

TEST_F(CopyBackendTest, FileThenDirectoryThenSymlink) {
  writeFile(path("l1/x"), "file");
  writeFile(path("l2/x/inner"), "dir");
  makeSymlink("target", path("l3/x"));
  AWAIT_READY(provision({"l1", "l2"}));
  EXPECT_TRUE(S_ISDIR(lstatOf("rootfs/x").st_mode));
  AWAIT_READY(copy_->destroy(path("rootfs"), path("backend")));
  AWAIT_READY(provision({"l1", "l2", "l3"}));
  EXPECT_TRUE(S_ISLNK(lstatOf("rootfs/x").st_mode));
  EXPECT_EQ("target", fs::read_symlink(path("rootfs/x")).string());
}

TEST_F(CopyBackendTest, HardlinksInALayerStayHardlinks) {
  writeFile(path("l1/a"), "shared");
  makeDirectory(path("l1/sub"));
  ASSERT_EQ(0, ::link(path("l1/a").c_str(), path("l1/sub/b").c_str()));
  AWAIT_READY(provision({"l1"}));
  EXPECT_EQ(lstatOf("rootfs/a").st_ino, lstatOf("rootfs/sub/b").st_ino);
  EXPECT_EQ(2u, lstatOf("rootfs/a").st_nlink);
  EXPECT_NE(lstatOf("l1/a").st_ino, lstatOf("rootfs/a").st_ino);  // a copy, not the layer's inode
  EXPECT_EQ("shared", readFile(path("rootfs/sub/b")));
}

TEST_F(CopyBackendTest, ReplacingAHardlinkedFileDoesNotChangeItsPartner) {
  writeFile(path("l1/a"), "old");
  ASSERT_EQ(0, ::link(path("l1/a").c_str(), path("l1/b").c_str()));
  writeFile(path("l2/a"), "new");
  AWAIT_READY(provision({"l1", "l2"}));
  EXPECT_EQ("new", readFile(path("rootfs/a")));
  EXPECT_EQ("old", readFile(path("rootfs/b")));
}

TEST_F(CopyBackendTest, KeepsOwnersModesXattrsDevicesFifosAndTimes) {
  writeFile(path("l1/bin/tool"), "#!/bin/sh\n");
  ASSERT_EQ(0, ::chown(path("l1/bin/tool").c_str(), 1234, 5678));
  ASSERT_EQ(0, ::chmod(path("l1/bin/tool").c_str(), 04755));
  ASSERT_EQ(0, ::setxattr(path("l1/bin/tool").c_str(), "user.note", "kept", 4, 0));
  ASSERT_EQ(0, ::mknod(path("l1/null").c_str(), S_IFCHR | 0666, makedev(1, 3)));
  ASSERT_EQ(0, ::mkfifo(path("l1/pipe").c_str(), 0640));
  makeDirectory(path("l1/opaque"));
  ASSERT_EQ(0, ::setxattr(path("l1/opaque").c_str(), "trusted.overlay.opaque", "y", 1, 0));
  ASSERT_EQ(0, ::chmod(path("l1/bin").c_str(), 0750));
  const struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
  ASSERT_EQ(0, ::utimensat(AT_FDCWD, path("l1/bin/tool").c_str(), old, 0));
  ASSERT_EQ(0, ::utimensat(AT_FDCWD, path("l1/bin").c_str(), old, 0));
  AWAIT_READY(provision({"l1"}));

  struct stat tool = lstatOf("rootfs/bin/tool");
  EXPECT_EQ(1234u, tool.st_uid);
  EXPECT_EQ(5678u, tool.st_gid);
  EXPECT_EQ(04755u, tool.st_mode & 07777);  // setuid survives the chown
  EXPECT_EQ(1000000000, tool.st_mtim.tv_sec);
  char value[8] = {};
  EXPECT_EQ(4, ::getxattr(path("rootfs/bin/tool").c_str(), "user.note", value, sizeof(value)));
  EXPECT_STREQ("kept", value);
  struct stat bin = lstatOf("rootfs/bin");
  EXPECT_EQ(0750u, bin.st_mode & 07777);
  EXPECT_EQ(1000000000, bin.st_mtim.tv_sec);  // set after its contents
  struct stat null = lstatOf("rootfs/null");
  EXPECT_TRUE(S_ISCHR(null.st_mode));
  EXPECT_EQ(makedev(1, 3), null.st_rdev);
  EXPECT_TRUE(S_ISFIFO(lstatOf("rootfs/pipe").st_mode));
  // Overlay's own attributes are not copied.
  EXPECT_EQ(-1, ::getxattr(path("rootfs/opaque").c_str(), "trusted.overlay.opaque", value, sizeof(value)));
}

TEST_F(CopyBackendTest, SparseFilesKeepTheirHoles) {
  makeDirectory(path("l1"));
  int fd = ::open(path("l1/sparse").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(0, ::ftruncate(fd, 64 << 20));                 // 64 MiB, all hole ...
  ASSERT_EQ(5, ::pwrite(fd, "tail!", 5, (64 << 20) - 5));  // ... but the end
  ::close(fd);
  AWAIT_READY(provision({"l1"}));
  struct stat st = lstatOf("rootfs/sparse");
  EXPECT_EQ(64 << 20, st.st_size);
  EXPECT_LT(st.st_blocks * 512, 1 << 20);
  std::string content = readFile(path("rootfs/sparse"));
  EXPECT_EQ("tail!", content.substr(content.size() - 5));
  EXPECT_EQ(std::string(16, '\0'), content.substr(0, 16));
}

TEST_F(CopyBackendTest, ManyFilesAcrossLayers) {
  for (int i = 0; i < 2000; ++i)
    writeFile(path("l1/d" + std::to_string(i % 20) + "/f" + std::to_string(i)), std::to_string(i));
  for (int i = 0; i < 2000; i += 2) writeFile(path("l2/d" + std::to_string(i % 20) + "/f" + std::to_string(i)), "v2");
  AWAIT_READY(provision({"l1", "l2"}));
  for (int i = 0; i < 2000; ++i) {
    const std::string expected = i % 2 == 0 ? "v2" : std::to_string(i);
    ASSERT_EQ(expected, readFile(path("rootfs/d" + std::to_string(i % 20) + "/f" + std::to_string(i))));
  }
}

TEST_F(CopyBackendTest, DestroyRefusesToCrossAMountInsideTheRootfs) {
  writeFile(path("l1/file"), "x");
  AWAIT_READY(provision({"l1"}));
  writeFile(path("host/precious"), "keep me");
  makeDirectory(path("rootfs/mnt"));
  ASSERT_EQ(0, ::mount(path("host").c_str(), path("rootfs/mnt").c_str(), nullptr, MS_BIND, nullptr));
  Future<bool> destroyed = copy_->destroy(path("rootfs"), path("backend"));
  AWAIT_EXPECT_ERROR(actors::ErrorKind::IO, destroyed);
  EXPECT_NE(std::string::npos, destroyed.failure().message.find("mount point"));
  EXPECT_EQ("keep me", readFile(path("host/precious")));
  ASSERT_EQ(0, ::umount2(path("rootfs/mnt").c_str(), MNT_DETACH));
  AWAIT_EXPECT_EQ(true, copy_->destroy(path("rootfs"), path("backend")));
}

// What a kernel before 5.8 makes the library do instead (run normally and
// with PROV_TEST_OLD_KERNEL=1, see tests/support/temp_dir.cpp): resolving
// beneath a root refuses the same things without openat2, and mount roots
// are found without STATX_ATTR_MOUNT_ROOT, a bind mount within one file
// system and a mount point with a space in its name included.
class KernelFallbackTest : public prov::testing::TemporaryDirectoryTest {
 protected:
  std::string path(const std::string& relative) { return (sandbox() / relative).string(); }
};

TEST_F(KernelFallbackTest, ResolvingBeneathARootRefusesWhatOpenat2Refuses) {
  makeDirectory(path("root/a/b"));
  writeFile(path("root/a/b/file"), "x");
  writeFile(path("outside"), "secret");
  ASSERT_EQ(0, ::symlink("../../outside", path("root/a/link").c_str()));
  ASSERT_EQ(0, ::symlink("b", path("root/a/dirlink").c_str()));
  makeDirectory(path("root/tmpfs"));
  ASSERT_EQ(0, ::mount("tmpfs", path("root/tmpfs").c_str(), "tmpfs", 0, "size=1m"));
  makeDirectory(path("root/tmpfs/inside"));
  actors::fs::Fd root(::open(path("root").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(root.valid());

  actors::fs::Fd file(actors::fs::openBeneath(root.get(), "a/b/file", O_RDONLY));
  EXPECT_TRUE(file.valid()) << std::strerror(errno);
  actors::fs::Fd dir(actors::fs::openBeneath(root.get(), "a/b", O_RDONLY | O_DIRECTORY));
  EXPECT_TRUE(dir.valid()) << std::strerror(errno);
  struct Case {
    const char* rel;
    int error;
  };
  for (const Case& c : {Case{"a/link", ELOOP}, Case{"a/dirlink/file", ELOOP}, Case{"../outside", EXDEV},
                        Case{"a/../../outside", EXDEV}, Case{"tmpfs/inside", EXDEV}, Case{"a/missing", ENOENT}}) {
    errno = 0;
    const int fd = actors::fs::openBeneath(root.get(), c.rel, O_RDONLY);
    EXPECT_EQ(-1, fd) << c.rel;
    if (fd >= 0) ::close(fd);
    EXPECT_EQ(c.error, errno) << c.rel << ": " << std::strerror(errno);
  }
  ASSERT_EQ(0, ::umount2(path("root/tmpfs").c_str(), MNT_DETACH));
}

TEST_F(KernelFallbackTest, MountRootsAreSeenWithAndWithoutTheStatxAttribute) {
  makeDirectory(path("host"));
  makeDirectory(path("plain"));
  makeDirectory(path("bind target"));
  ASSERT_EQ(0, ::mount(path("host").c_str(), path("bind target").c_str(), nullptr, MS_BIND, nullptr));
  for (bool fallback : {false, true}) {
    SCOPED_TRACE(fallback ? "compared with the parent" : "as statx says");
    actors::fs::forceMountRootFallback(fallback);
    EXPECT_TRUE(actors::fs::isMountRoot(AT_FDCWD, path("bind target").c_str()));
    EXPECT_FALSE(actors::fs::isMountRoot(AT_FDCWD, path("plain").c_str()));
    EXPECT_FALSE(actors::fs::isMountRoot(AT_FDCWD, path("host").c_str()));
  }
  actors::fs::forceMountRootFallback(std::getenv("PROV_TEST_OLD_KERNEL") != nullptr);
  // Before 5.8 there are no mount ids either: the mount table.
  EXPECT_TRUE(actors::fs::isMountPoint(path("bind target")));
  EXPECT_TRUE(actors::fs::isMountPoint("/proc"));
  EXPECT_FALSE(actors::fs::isMountPoint(path("plain")));
  ASSERT_EQ(0, ::umount2(path("bind target").c_str(), MNT_DETACH));
  EXPECT_FALSE(actors::fs::isMountPoint(path("bind target")));
}

class RemoveTreeTest : public prov::testing::TemporaryDirectoryTest {
 protected:
  std::string path(const std::string& relative) { return (sandbox() / relative).string(); }
};

// removeSmallTree: a tree within its budget goes whole; a bigger one stops
// before the directory that passes it, and removeTree finishes it. Neither
// follows a symlink nor removes a mount point.
TEST_F(RemoveTreeTest, ASmallTreeGoesWithinItsBudgetAndABigOneIsLeftForRemoveTree) {
  makeDirectory(path("outside"));
  writeFile(path("outside/kept"), "never removed through the link");
  auto build = [&] {
    makeDirectory(path("tree/a/b"));
    writeFile(path("tree/a/b/file"), "x");
    writeFile(path("tree/top"), "y");
    ASSERT_EQ(0, ::symlink(path("outside").c_str(), path("tree/a/link").c_str()));
  };
  build();  // 5 entries below tree: a, top, a/b, a/link, a/b/file
  auto small = actors::fs::removeSmallTree(path("tree"), 5);
  ASSERT_TRUE(small.isSome()) << small.error().message;
  EXPECT_TRUE(*small);
  EXPECT_FALSE(std::filesystem::exists(path("tree")));
  EXPECT_TRUE(std::filesystem::exists(path("outside/kept")));

  build();
  auto big = actors::fs::removeSmallTree(path("tree"), 4);
  ASSERT_TRUE(big.isError());
  EXPECT_EQ(actors::ErrorKind::ResourceExhausted, big.error().kind) << big.error().message;
  EXPECT_TRUE(std::filesystem::exists(path("tree/a/b/file")));  // a/b's entry passed the budget: untouched
  auto rest = actors::fs::removeTree(path("tree"));
  ASSERT_TRUE(rest.isSome()) << rest.error().message;
  EXPECT_FALSE(std::filesystem::exists(path("tree")));
  EXPECT_TRUE(std::filesystem::exists(path("outside/kept")));

  auto none = actors::fs::removeSmallTree(path("tree"), 5);
  ASSERT_TRUE(none.isSome()) << none.error().message;
  EXPECT_FALSE(*none);

  makeDirectory(path("tree/mounted"));
  ASSERT_EQ(0, ::mount("tmpfs", path("tree/mounted").c_str(), "tmpfs", 0, "size=1m"));
  writeFile(path("tree/mounted/kept"), "z");
  auto mounted = actors::fs::removeSmallTree(path("tree"), 64);
  ASSERT_TRUE(mounted.isError());
  EXPECT_EQ(actors::ErrorKind::IO, mounted.error().kind) << mounted.error().message;
  EXPECT_NE(std::string::npos, mounted.error().message.find("mount point")) << mounted.error().message;
  EXPECT_TRUE(std::filesystem::exists(path("tree/mounted/kept")));
  ASSERT_EQ(0, ::umount2(path("tree/mounted").c_str(), MNT_DETACH));
}

}  // namespace
}  // namespace prov::backend
