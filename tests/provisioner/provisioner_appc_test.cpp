// The Provisioner with AppC images through the async harness, with the real
// backends: Mesos's ProvisionerAppcTest cases (provision with bind, nested,
// recover, recover nested, nested without parent image), dependencies
// through overlay and copy, the runtime config in ProvisionInfo, bind
// refusing an image with dependencies, and GC of AppC images.

#include <gtest/gtest.h>

#include <ctime>

#include "backend/backend.hpp"
#include "provisioner/provisioner.hpp"
#include "testkit/files.hpp"
#include "tests/provisioner/helpers.hpp"
#include "tests/store/appc_fixture.hpp"

namespace prov::provisioner {
namespace {

namespace fs = std::filesystem;
using store::AciSpec;
using store::AppcStoreTest;
using testing::TarEntry;

class ProvisionerAppcTest : public AppcStoreTest {
 protected:
  void SetUp() override {
    AppcStoreTest::SetUp();
    store_.reset();  // the provisioner makes its own
    workDir_ = sandbox() / "work";
    AciSpec base;
    base.name = "example.com/base";
    base.rootfs = {TarEntry::directory("etc"), TarEntry::file("etc/os", "base"), TarEntry::file("etc/shared", "base")};
    publish(base);
    AciSpec app;
    app.name = "example.com/app";
    app.exec = {"/bin/app", "serve"};
    app.environment = {"PATH=/bin", "MODE=prod"};
    app.workingDirectory = "/srv";
    app.dependencies = {{"example.com/base", "", {}}};
    app.rootfs = {TarEntry::directory("etc"), TarEntry::file("etc/shared", "app"), TarEntry::file("app", "app")};
    publish(app);
    AciSpec test;
    test.name = "example.com/test";
    test.rootfs = {TarEntry::directory("tmp"), TarEntry::file("tmp/test", "test")};
    publish(test);
  }

  void TearDown() override {
    if (provisioner_) fixture::destroyAll(*provisioner_);
    provisioner_.reset();
    AppcStoreTest::TearDown();
    EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(sandbox())) << "a mount leaked";
  }

  // A provisioner over workDir_ serving AppC images from the fixture's
  // directory, recovered with `known`.
  void start(const std::set<std::string>& known, const std::string& backendName) {
    provisioner_.reset();
    Provisioner::Parts parts;
    parts.workDir = workDir_.string();
    fetcher::AppcFetchOptions fetch;
    fetch.prefix = prefix();
    auto fetcher = fetcher::AppcFetcher::create(runtime_, fetch);
    ASSERT_TRUE(fetcher.isSome()) << fetcher.error().message;
    store::AppcStoreOptions options;
    options.storeDir = (workDir_ / "store/appc").string();
    options.syncImages = false;
    auto store = store::AppcStore::create(runtime_, options, std::move(*fetcher));
    ASSERT_TRUE(store.isSome()) << store.error().message;
    parts.stores[store::kAppcProvider] = std::move(*store);
    for (const char* name : {backend::kBind, backend::kCopy, backend::kOverlay}) {
      auto b = backend::createBackend(runtime_, name);
      ASSERT_TRUE(b.isSome()) << b.error().message;
      parts.backends[name] = std::move(*b);
    }
    parts.defaultBackend = backendName;
    fixture::start(runtime_, std::move(parts), known, provisioner_);
  }

  fs::path containerDir(const std::string& id) const { return fixture::containerDir(workDir_, id); }

  std::vector<messages::ContainerRootfs> rootfses(const std::string& id) {
    auto containers = provisioner_->containers();
    EXPECT_TRUE(containers.waitFor(std::chrono::seconds(15)) && containers.isReady());
    for (const auto& c : containers.get()) {
      if (c.id == id) return c.rootfses;
    }
    return {};
  }

  fs::path workDir_;
  std::unique_ptr<Provisioner> provisioner_;
};

// Mesos ProvisionerAppcTest.ROOT_Provision.
TEST_F(ProvisionerAppcTest, ProvisionWithBind) {
  start({}, backend::kBind);
  auto info = provisioner_->provision("12345", appcImage("example.com/test"));
  AWAIT_READY(info);
  EXPECT_EQ("bind", info->backend);
  EXPECT_EQ("test", testing::readFile(fs::path(info->rootfs) / "tmp/test"));
  auto made = rootfses("12345");
  ASSERT_EQ(1u, made.size());
  EXPECT_EQ("bind", made[0].backend());
  EXPECT_EQ(fs::path(info->rootfs).filename().string(), made[0].id());
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("12345"));
  EXPECT_FALSE(fs::exists(containerDir("12345")));
}

// The AppC store's part of quiesce(): the write of its index that a
// destroy's last use started (ProvisionerTest has the Docker store's).
TEST_F(ProvisionerAppcTest, QuiesceWaitsForTheIndexWriteADestroyStarted) {
  start({}, backend::kCopy);
  AWAIT_READY(provisioner_->provision("c1", appcImage("example.com/test")));
  provisioner_.reset();
  const fs::path file = workDir_ / "store/appc/index/images";
  {  // two hours ago, as if the container had run that long
    messages::StoredImages index;
    ASSERT_TRUE(index.ParseFromString(testing::readFile(file)));
    ASSERT_EQ(1, index.images_size());
    index.mutable_images(0)->set_last_used_at(static_cast<std::int64_t>(std::time(nullptr)) - 7200);
    std::string bytes;
    index.SerializeToString(&bytes);
    testing::writeFile(file, bytes);
  }
  start({"c1"}, backend::kCopy);
  fixture::expectQuiesceWaitsForTheLastUseWrite(*provisioner_, "c1", file);
}

// Mesos ProvisionerAppcTest.ROOT_ProvisionNestedContainer.
TEST_F(ProvisionerAppcTest, ProvisionNestedContainerWithBind) {
  start({}, backend::kBind);
  auto info = provisioner_->provision("parent/child", appcImage("example.com/test"));
  AWAIT_READY(info);
  auto made = rootfses("parent/child");
  ASSERT_EQ(1u, made.size());
  EXPECT_EQ("bind", made[0].backend());
  EXPECT_EQ(fs::path(info->rootfs).filename().string(), made[0].id());
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("parent/child"));
  EXPECT_FALSE(fs::exists(containerDir("parent/child")));
}

// Mesos ProvisionerAppcTest.Recover.
TEST_F(ProvisionerAppcTest, Recover) {
  start({}, backend::kCopy);
  AWAIT_READY(provisioner_->provision("12345", appcImage("example.com/test")));
  start({"12345"}, backend::kCopy);
  AWAIT_READY(provisioner_->provision("12345", appcImage("example.com/test")));
  auto made = rootfses("12345");
  ASSERT_EQ(2u, made.size());
  for (const auto& rootfs : made) {
    EXPECT_EQ("copy", rootfs.backend());
    EXPECT_TRUE(fs::exists(containerDir("12345") / "backends/copy/rootfses" / rootfs.id() / "tmp/test"));
  }
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("12345"));
  EXPECT_FALSE(fs::exists(containerDir("12345")));
}

// Mesos ProvisionerAppcTest.RecoverNestedContainer.
TEST_F(ProvisionerAppcTest, RecoverNestedContainer) {
  start({}, backend::kCopy);
  AWAIT_READY(provisioner_->provision("parent", appcImage("example.com/test")));
  AWAIT_READY(provisioner_->provision("parent/child", appcImage("example.com/test")));
  start({"parent", "parent/child"}, backend::kCopy);
  AWAIT_READY(provisioner_->provision("parent/child", appcImage("example.com/test")));
  EXPECT_EQ(2u, rootfses("parent/child").size());
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("parent/child"));
  EXPECT_FALSE(fs::exists(containerDir("parent/child")));
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("parent"));
  EXPECT_FALSE(fs::exists(containerDir("parent")));
}

// Mesos ProvisionerAppcTest.RecoverNestedContainerNoParentImage.
TEST_F(ProvisionerAppcTest, RecoverNestedContainerNoParentImage) {
  start({}, backend::kCopy);
  AWAIT_READY(provisioner_->provision("parent/child", appcImage("example.com/test")));
  start({"parent", "parent/child"}, backend::kCopy);
  AWAIT_READY(provisioner_->provision("parent/child", appcImage("example.com/test")));
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("parent/child"));
  EXPECT_FALSE(fs::exists(containerDir("parent/child")));
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("parent"));
  EXPECT_FALSE(fs::exists(containerDir("parent")));
}

TEST_F(ProvisionerAppcTest, DependenciesAreLayeredUnderTheImageWithOverlayAndCopy) {
  for (const char* backendName : {backend::kOverlay, backend::kCopy}) {
    SCOPED_TRACE(backendName);
    start({}, backendName);
    auto info = provisioner_->provision("c1", appcImage("example.com/app"));
    AWAIT_READY(info);
    EXPECT_EQ(backendName, info->backend);
    EXPECT_EQ("base", testing::readFile(fs::path(info->rootfs) / "etc/os")) << "from the dependency";
    EXPECT_EQ("app", testing::readFile(fs::path(info->rootfs) / "etc/shared")) << "the image over its dependency";
    EXPECT_EQ("app", testing::readFile(fs::path(info->rootfs) / "app"));
    const auto& config = info->image->config();
    EXPECT_EQ((std::vector<std::string>{"/bin/app", "serve"}), testing::strings(config.entrypoint()));
    EXPECT_EQ((std::vector<std::string>{"PATH=/bin", "MODE=prod"}), testing::strings(config.env()));
    EXPECT_EQ("/srv", config.working_dir());
    EXPECT_EQ("0:0", config.user());
    auto made = rootfses("c1");
    ASSERT_EQ(1u, made.size());
    EXPECT_EQ(2, made[0].layers_size());
    AWAIT_ASSERT_EQ(true, provisioner_->destroy("c1"));
  }
}

TEST_F(ProvisionerAppcTest, BindRefusesAnImageWithDependencies) {
  start({}, backend::kBind);
  auto info = provisioner_->provision("c1", appcImage("example.com/app"));
  AWAIT_FAILED(info);
  EXPECT_NE(std::string::npos, info.failure().message.find("exactly one layer")) << info.failure().message;
  EXPECT_TRUE(rootfses("c1").empty());
}

TEST_F(ProvisionerAppcTest, PruneKeepsWhatContainersUse) {
  start({}, backend::kOverlay);
  auto used = provisioner_->provision("c1", appcImage("example.com/app"));
  AWAIT_READY(used);
  auto unused = provisioner_->pullImage(appcImage("example.com/test"));
  AWAIT_READY(unused);
  AWAIT_READY(provisioner_->pruneImages({}));
  auto images = provisioner_->images();
  AWAIT_READY(images);
  ASSERT_EQ(1u, images->size());
  EXPECT_EQ(used->image->key(), images->at(0).key());
  EXPECT_FALSE(fs::exists(workDir_ / "store/appc/images" / unused->appc().id()));
  for (const auto& id : used->image->appc().image_ids())
    EXPECT_TRUE(fs::exists(workDir_ / "store/appc/images" / id / "rootfs"));
  EXPECT_EQ("base", testing::readFile(fs::path(used->rootfs) / "etc/os"));
}

TEST_F(ProvisionerAppcTest, AppcImagesAreRefusedWhenTheProviderIsOff) {
  start({}, backend::kCopy);
  provisioner_.reset();
  auto created = Provisioner::create(fixture::copyOnlyParts(runtime_, workDir_), runtime_);
  ASSERT_TRUE(created.isSome()) << created.error().message;
  provisioner_ = std::move(*created);
  auto info = provisioner_->provision("c1", appcImage("example.com/test"));
  AWAIT_FAILED(info);
  EXPECT_EQ(ErrorKind::Unsupported, info.failure().kind);
  EXPECT_NE(std::string::npos, info.failure().message.find("appc image provider is not enabled"))
      << info.failure().message;
}

}  // namespace
}  // namespace prov::provisioner
