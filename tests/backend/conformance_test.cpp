// One conformance suite for every backend (containerd's snapshotter-suite
// idea): the same cases run against copy, bind (single-layer cases only) and
// overlay, the latter both with the new mount API's `lowerdir+` and with the
// short-symlink layout older kernels need.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "backend/backend.hpp"
#include "backend/mount.hpp"
#include "testkit/files.hpp"
#include "tests/support/await.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::backend {
namespace {

namespace fs = std::filesystem;
using prov::testing::makeOpaque;
using prov::testing::makeWhiteout;
using prov::testing::readFile;
using prov::testing::writeFile;

struct Variant {
  std::string label;
  std::string backend;
  BackendOptions options;
};

class BackendConformanceTest : public prov::testing::TemporaryDirectoryTest,
                               public ::testing::WithParamInterface<Variant> {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    auto created = createBackend(runtime_, GetParam().backend, GetParam().options);
    ASSERT_TRUE(created.isSome()) << created.error().message;
    backend_ = std::move(*created);
    rootfs_ = (sandbox() / "rootfses" / "rootfs-0").string();
    backendDir_ = (sandbox() / "backend").string();
    prov::testing::makeDirectory(sandbox() / "rootfses");
  }

  void TearDown() override {
    // A mount left under the sandbox is a test failure, then cleaned up.
    auto leftovers = prov::testing::mountsUnder(sandbox());
    EXPECT_TRUE(leftovers.empty()) << "mount left behind: " << leftovers.front();
    for (auto it = leftovers.rbegin(); it != leftovers.rend(); ++it) (void)mount::unmountLazily(*it);
    backend_.reset();
    TemporaryDirectoryTest::TearDown();
  }

  std::string layer(const std::string& name) { return (sandbox() / "layers" / name).string(); }

  Future<RootfsInfo> provision(const std::vector<std::string>& layers) {
    return backend_->provision(layers, rootfs_, backendDir_);
  }

  actors::Runtime runtime_;
  std::unique_ptr<Backend> backend_;
  std::string rootfs_;
  std::string backendDir_;
};

// Cases with several layers: every backend but bind.
class MultiLayerTest : public BackendConformanceTest {};

TEST_P(MultiLayerTest, UpperLayerShadowsLower) {
  // Mesos OverlayFSBackend / CopyBackend.
  writeFile(layer("1") + "/dir1/1", "1");
  writeFile(layer("1") + "/file", "test1");
  writeFile(layer("2") + "/dir2/2", "2");
  writeFile(layer("2") + "/file", "test2");
  AWAIT_READY(provision({layer("1"), layer("2")}));
  EXPECT_EQ("1", readFile(rootfs_ + "/dir1/1"));
  EXPECT_EQ("2", readFile(rootfs_ + "/dir2/2"));
  EXPECT_EQ("test2", readFile(rootfs_ + "/file"));
  AWAIT_EXPECT_EQ(true, backend_->destroy(rootfs_, backendDir_));
  EXPECT_FALSE(fs::exists(rootfs_));
}

TEST_P(MultiLayerTest, WritesLandInTheRootfsNeverInALayer) {
  writeFile(layer("1") + "/file", "test1");
  writeFile(layer("2") + "/file", "test2");
  AWAIT_READY(provision({layer("1"), layer("2")}));
  writeFile(rootfs_ + "/file", "test3");
  writeFile(rootfs_ + "/new", "n");
  EXPECT_EQ("test3", readFile(rootfs_ + "/file"));
  EXPECT_EQ("test2", readFile(layer("2") + "/file"));
  EXPECT_EQ("test1", readFile(layer("1") + "/file"));
  EXPECT_FALSE(fs::exists(layer("2") + "/new"));
  EXPECT_FALSE(fs::exists(layer("1") + "/new"));
  AWAIT_EXPECT_EQ(true, backend_->destroy(rootfs_, backendDir_));
}

TEST_P(MultiLayerTest, WhiteoutsAndOpaqueDirectories) {
  writeFile(layer("1") + "/a/gone", "x");
  writeFile(layer("1") + "/a/kept", "y");
  writeFile(layer("1") + "/b/old", "z");
  writeFile(layer("1") + "/c/sub/deep", "d");
  writeFile(layer("1") + "/top", "t");
  makeWhiteout(layer("2") + "/a/gone");
  makeOpaque(layer("2") + "/b");
  writeFile(layer("2") + "/b/new", "re-added in the same layer");
  makeWhiteout(layer("2") + "/c");
  AWAIT_READY(provision({layer("1"), layer("2")}));
  EXPECT_FALSE(fs::exists(rootfs_ + "/a/gone"));
  EXPECT_EQ("y", readFile(rootfs_ + "/a/kept"));
  EXPECT_FALSE(fs::exists(rootfs_ + "/b/old"));
  EXPECT_EQ("re-added in the same layer", readFile(rootfs_ + "/b/new"));
  EXPECT_FALSE(fs::exists(rootfs_ + "/c"));
  EXPECT_EQ("t", readFile(rootfs_ + "/top"));
  AWAIT_EXPECT_EQ(true, backend_->destroy(rootfs_, backendDir_));
}

TEST_P(MultiLayerTest, SixtyFourLayersWithLongPaths) {
  // Mesos OverlayFSBackendWithManyLayers (MESOS-6000): 64 layers whose
  // paths together are far over one page.
  std::vector<std::string> layers;
  for (int i = 0; i < 64; ++i) {
    char name[80];
    std::snprintf(name, sizeof(name), "lower_%.59d", i);
    layers.push_back(layer(name));
    prov::testing::makeDirectory(layers.back() + "/dir" + std::to_string(i));
  }
  std::size_t total = 0;
  for (const auto& l : layers) total += l.size() + 1;
  ASSERT_GT(total, 4096u);
  AWAIT_READY(provision(layers));
  for (int i = 0; i < 64; ++i) EXPECT_TRUE(fs::is_directory(rootfs_ + "/dir" + std::to_string(i))) << i;
  AWAIT_EXPECT_EQ(true, backend_->destroy(rootfs_, backendDir_));
}

// Cases with one layer: every backend.
class SingleLayerTest : public BackendConformanceTest {};

TEST_P(SingleLayerTest, DestroyRemovesEverythingAndSecondDestroyIsFalse) {
  writeFile(layer("1") + "/file", "test1");
  AWAIT_READY(provision({layer("1")}));
  AWAIT_EXPECT_EQ(true, backend_->destroy(rootfs_, backendDir_));
  EXPECT_FALSE(fs::exists(rootfs_));
  // No per-rootfs state is left (overlay's scratch dir included).
  EXPECT_FALSE(fs::exists(backendDir_ + "/scratch/rootfs-0"));
  EXPECT_EQ("test1", readFile(layer("1") + "/file"));  // layers are untouched
  AWAIT_EXPECT_EQ(false, backend_->destroy(rootfs_, backendDir_));
}

TEST_P(SingleLayerTest, DestroyWorksWhileAFileIsHeldOpen) {
  // Mesos RootfsCleanup (MESOS-9196): the lazy unmount does not wait.
  writeFile(layer("1") + "/file", "held");
  AWAIT_READY(provision({layer("1")}));
  int fd = ::open((rootfs_ + "/file").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  AWAIT_EXPECT_EQ(true, backend_->destroy(rootfs_, backendDir_));
  EXPECT_FALSE(fs::exists(rootfs_));
  char buffer[8] = {};
  EXPECT_EQ(4, ::pread(fd, buffer, sizeof(buffer), 0));
  EXPECT_STREQ("held", buffer);
  ::close(fd);
}

TEST_P(SingleLayerTest, ProvisionOverAnExistingRootfsFails) {
  writeFile(layer("1") + "/file", "x");
  prov::testing::makeDirectory(rootfs_);
  writeFile(rootfs_ + "/mine", "keep");
  AWAIT_EXPECT_ERROR(actors::ErrorKind::AlreadyExists, provision({layer("1")}));
  EXPECT_EQ("keep", readFile(rootfs_ + "/mine"));  // untouched
  fs::remove_all(rootfs_);
}

TEST_P(SingleLayerTest, NoLayersIsAnError) {
  Future<RootfsInfo> f = provision({});
  AWAIT_EXPECT_ERROR(actors::ErrorKind::InvalidArgument, f);
  EXPECT_FALSE(fs::exists(rootfs_));
}

TEST_P(SingleLayerTest, MissingLayerFailsAndLeavesNothing) {
  Future<RootfsInfo> f = provision({layer("does-not-exist")});
  AWAIT_FAILED(f);
  EXPECT_NE(std::string::npos, f.failure().message.find("does-not-exist")) << f.failure().message;
  EXPECT_FALSE(fs::exists(rootfs_));
  EXPECT_FALSE(fs::exists(backendDir_ + "/scratch/rootfs-0"));
}

// After the whole binary: no mount under any sandbox this process made.
class NoMountLeftBehind : public ::testing::Environment {
 public:
  void TearDown() override {
    for (const auto& sandbox : prov::testing::sandboxesCreated()) {
      auto mounts = prov::testing::mountsUnder(sandbox);
      EXPECT_TRUE(mounts.empty()) << "mount left behind: " << mounts.front();
    }
  }
};
[[maybe_unused]] const auto* const kNoMountLeftBehind = ::testing::AddGlobalTestEnvironment(new NoMountLeftBehind);

std::string variantName(const ::testing::TestParamInfo<Variant>& info) { return info.param.label; }

const Variant kCopyVariant{"copy", kCopy, {}};
const Variant kBindVariant{"bind", kBind, {}};
const Variant kOverlayVariant{"overlay", kOverlay, {.overlayUseLowerdirPlus = true}};
const Variant kOverlaySymlinksVariant{"overlay_symlinks", kOverlay, {.overlayUseLowerdirPlus = false}};

INSTANTIATE_TEST_SUITE_P(Backends, SingleLayerTest,
                         ::testing::Values(kCopyVariant, kBindVariant, kOverlayVariant, kOverlaySymlinksVariant),
                         variantName);
INSTANTIATE_TEST_SUITE_P(Backends, MultiLayerTest,
                         ::testing::Values(kCopyVariant, kOverlayVariant, kOverlaySymlinksVariant), variantName);

}  // namespace
}  // namespace prov::backend
