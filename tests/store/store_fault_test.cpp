// The image store under "fail the N-th disk call, for every N"
// (tests/support/faulty_disk.hpp): pull, prune and recover. Each failed run
// names the errno and a path of the store and leaves no staging or temp
// leftovers; the index lists only complete images; the same operation
// retried without faults succeeds and gives the same trees.

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fetcher/local/local.hpp"
#include "store/metadata_manager.hpp"
#include "store/paths.hpp"
#include "testkit/files.hpp"
#include "testkit/real_registry.hpp"
#include "tests/store/store_fixture.hpp"
#include "tests/support/faulty_disk.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using testing::TarEntry;

class StoreFaultTest : public ImageStoreTest {
 protected:
  // Installed for the whole test, TearDown included: the store's background
  // work (a gc sweep) may still call it until the store is gone.
  testing::FaultyDisk disk_;

  void SetUp() override {
    ImageStoreTest::SetUp();
    // test/app's top layer only implies app/, which the base has: its
    // layer is a variant of its seed (store/image_store.hpp), made under
    // every fault too.
    const std::vector<TarEntry> base = {TarEntry::directory("etc"), TarEntry::file("etc/os", "base"),
                                        TarEntry::directory("app", 0750)};
    publish("test/app", "latest", {base, {TarEntry::file("app/run", "app"), TarEntry::symlink("app/sh", "/bin/sh")}});
    publish("test/other", "latest", {base, {TarEntry::file("other", "other")}});
  }

  messages::Image image(const std::string& repo) { return dockerImage(registry_.hostPort() + "/" + repo); }

  // A fresh, empty store directory and store.
  void emptyStore() {
    store_.reset();
    fs::remove_all(storeDir_);
    restartStore();
  }

  // No staging entry, no temp file, and every image the index lists has
  // all its layers, each a whole tree. The layers of a failed pull that
  // were still running when it failed are discarded: their staging
  // directories go once they stop, so the check waits for that.
  void expectConsistent(long n) {
    waitFor([&] { return stagingEntries().empty(); });
    expectStagingEmpty();
    // gc/ is deleted in the background meanwhile: not looked into.
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(storeDir_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->path() == storeDir_ / "gc") it.disable_recursion_pending();
      EXPECT_EQ(std::string::npos, it->path().filename().string().find(".tmp-")) << "call " << n << ": " << it->path();
    }
    EXPECT_FALSE(ec) << "call " << n << ": " << ec.message();
    auto images = store_->images();
    AWAIT_READY(images);
    for (const auto& stored : images.get()) {
      // Its config is there (a get would fetch it again, unseen).
      EXPECT_TRUE(fs::exists(paths::config(storeDir_.string(), stored.config_digest())))
          << "call " << n << ": " << stored.key();
      auto info = store_->get(image(stored.reference().repository()));
      AWAIT_READY(info);
      expectTrees(info.get(), stored.reference().repository(), n);
    }
  }

  // Every entry of the index on disk has its config file there: read by
  // an index of its own, with the store closed.
  void expectIndexedConfigsOnDisk(long n) {
    ASSERT_FALSE(store_) << "the store is closed first";
    MetadataManager index(runtime_, storeDir_.string());
    auto entries = index.recover();
    AWAIT_READY(entries);
    for (const auto& stored : entries.get()) {
      EXPECT_TRUE(fs::exists(paths::config(storeDir_.string(), stored.config_digest())))
          << "call " << n << ": " << stored.key();
    }
  }

  void expectTrees(const ImageInfo& info, const std::string& repo, long n) {
    ASSERT_EQ(2u, info.layers.size()) << "call " << n;
    EXPECT_EQ("base", testing::readFile(fs::path(info.layers[0]) / "etc/os")) << "call " << n;
    if (repo == "test/app") {
      EXPECT_EQ("app", testing::readFile(fs::path(info.layers[1]) / "app/run")) << "call " << n;
      EXPECT_EQ(fs::perms(0750), fs::status(fs::path(info.layers[1]) / "app").permissions()) << "call " << n;
      EXPECT_NE(std::string::npos, info.layers[1].find('-')) << "call " << n << ": a variant";
      EXPECT_EQ("/bin/sh", fs::read_symlink(fs::path(info.layers[1]) / "app/sh")) << "call " << n;
    } else {
      EXPECT_EQ("other", testing::readFile(fs::path(info.layers[1]) / "other")) << "call " << n;
    }
  }

  void sweepLocalPull(std::shared_ptr<fetcher::Puller> puller, const messages::Image& local, const fs::path& source,
                      long atLeast);
  testing::OciLayout localLayout();
};

TEST_F(StoreFaultTest, PullUnderEveryFault) {
  testing::FaultyDisk& disk = disk_;
  Future<ImageInfo> info;
  const long count = testing::fault::sweep(
      disk, std::nullopt, ENOSPC, [&] { emptyStore(); },
      [&] {
        info = store_->get(image("test/app"));
        info.waitFor(testing::kDefaultAwait);
      },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(testing::fault::endedClearly(info, n, failedCall, {storeDir_.string()}));
        expectConsistent(n);
        store_.reset();
        expectIndexedConfigsOnDisk(n);
        restartStore();  // what a restart finds is consistent too
        expectConsistent(n);
        auto retried = store_->get(image("test/app"));
        AWAIT_READY(retried);
        expectTrees(retried.get(), "test/app", n);
      });
  RecordProperty("disk_calls", static_cast<int>(count));
  EXPECT_GE(count, 20);
}

#ifndef PROV_STORE_CRASH_CHILD
#error "PROV_STORE_CRASH_CHILD must name the crash child executable"
#endif

// A process that dies (SIGKILL) at its N-th disk call of a pull, for every
// N; then a recover in this process finds the store consistent, and the
// same pull completes. The child (crash_child.cpp) counts its calls first.
TEST_F(StoreFaultTest, KillNineAtEveryDiskCallOfAPullThenRecover) {
  auto child = [&](const std::string& crashAt) {
    return testing::runCommand({PROV_STORE_CRASH_CHILD, storeDir_.string(), registry_.url(), "test/app", crashAt});
  };
  store_.reset();
  fs::remove_all(storeDir_);
  const testing::CommandResult counted = child("count");
  ASSERT_EQ(0, counted.status) << counted.output;
  const auto at = counted.output.find("disk_calls ");
  ASSERT_NE(std::string::npos, at) << counted.output;
  const long count = std::stol(counted.output.substr(at + 11));
  ASSERT_GE(count, 20);
  long killed = 0;
  for (long n = 1; n <= count; ++n) {
    store_.reset();
    fs::remove_all(storeDir_);
    const testing::CommandResult run = child(std::to_string(n));
    // -1: killed. 0: this run made fewer calls than the counted one (the
    // layers extract concurrently, so the order and count may vary).
    ASSERT_TRUE(run.status == -1 || run.status == 0) << "call " << n << ": " << run.output;
    if (run.status == -1) ++killed;
    restartStore();
    expectConsistent(n);
    auto retried = store_->get(image("test/app"));
    AWAIT_READY(retried);
    expectTrees(retried.get(), "test/app", n);
  }
  RecordProperty("disk_calls", static_cast<int>(count));
  EXPECT_GE(killed, count - 2) << "most runs died at the call asked for";
}

// A local source under every fault: `image` read by `puller` from the
// file or directory `source`. Faults on the reading side name the source;
// on the writing side, the store.
void StoreFaultTest::sweepLocalPull(std::shared_ptr<fetcher::Puller> puller, const messages::Image& local,
                                    const fs::path& source, long atLeast) {
  const fs::path localStore = sandbox() / "local-store";
  std::unique_ptr<ImageStore> store;
  auto open = [&] {
    store.reset();
    ImageStoreOptions options;
    options.storeDir = localStore.string();
    auto made = ImageStore::create(runtime_, options, [puller](const messages::Image&) { return puller; });
    ASSERT_TRUE(made.isSome()) << made.error().message;
    store = std::move(*made);
    AWAIT_READY(store->recover());
  };
  testing::FaultyDisk& disk = disk_;
  Future<ImageInfo> info;
  const long count = testing::fault::sweep(
      disk, std::nullopt, ENOSPC,
      [&] {
        store.reset();
        fs::remove_all(localStore);
        open();
      },
      [&] {
        info = store->get(local);
        info.waitFor(testing::kDefaultAwait);
      },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(testing::fault::endedClearly(info, n, failedCall, {localStore.string(), source.string()}));
        waitFor([&] { return fs::is_empty(localStore / "staging"); });
        EXPECT_TRUE(fs::is_empty(localStore / "staging"))
            << "call " << n << " (" << failedCall.value_or("none") << "): " << testing::describe(info) << " "
            << testing::treeOf(localStore / "staging").size();
        open();  // a restart, then the same pull without faults
        auto retried = store->get(local);
        AWAIT_READY(retried);
        ASSERT_EQ(2u, retried->layers.size()) << "call " << n;
        EXPECT_EQ("base", testing::readFile(fs::path(retried->layers[0]) / "etc/os")) << "call " << n;
        EXPECT_EQ("app", testing::readFile(fs::path(retried->layers[1]) / "app/run")) << "call " << n;
      });
  RecordProperty("disk_calls", static_cast<int>(count));
  EXPECT_GE(count, atLeast);
}

testing::OciLayout StoreFaultTest::localLayout() {
  testing::OciLayout layout(sandbox() / "layout");
  testing::ImageSpec spec;
  spec.architecture = fetcher::hostPlatform().architecture();
  spec.layers = {{TarEntry::file("etc/os", "base")}, {TarEntry::file("app/run", "app")}};
  layout.tag(layout.addImage(spec), "v1");
  return layout;
}

TEST_F(StoreFaultTest, PullFromAnOciLayoutUnderEveryFault) {
  auto created = fetcher::OciLayoutPuller::create(runtime_);
  ASSERT_TRUE(created.isSome()) << created.error().message;
  testing::OciLayout layout = localLayout();
  messages::Image local;
  local.set_type(messages::Image::OCI_LAYOUT);
  local.set_path(layout.dir().string());
  local.set_layout_tag("v1");
  sweepLocalPull(std::move(*created), local, layout.dir(), 15);
}

// A `docker save` archive, as skopeo writes it: read in place, without
// unpacking it first.
TEST_F(StoreFaultTest, PullFromADockerArchiveUnderEveryFault) {
  auto created = fetcher::DockerArchivePuller::create(runtime_);
  ASSERT_TRUE(created.isSome()) << created.error().message;
  testing::OciLayout layout = localLayout();
  const fs::path file = sandbox() / "image.tar";
  auto saved = testing::runCommand({"skopeo", "copy", "-q", "oci:" + layout.dir().string() + ":v1",
                                    "docker-archive:" + file.string() + ":test/app:v1"});
  ASSERT_EQ(0, saved.status) << saved.output;
  messages::Image local;
  local.set_type(messages::Image::DOCKER_ARCHIVE);
  local.set_path(file.string());
  sweepLocalPull(std::move(*created), local, file, 15);
}

TEST_F(StoreFaultTest, PruneUnderEveryFault) {
  testing::FaultyDisk& disk = disk_;
  Future<Nothing> pruned;
  const long count = testing::fault::sweep(
      disk, std::nullopt, ENOSPC,
      [&] {
        emptyStore();
        AWAIT_READY(store_->get(image("test/app")));
        AWAIT_READY(store_->get(image("test/other")));
      },
      [&] {
        pruned = store_->prune({image("test/other")}, {});
        pruned.waitFor(testing::kDefaultAwait);
      },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(testing::fault::endedClearly(pruned, n, failedCall, {storeDir_.string()}));
        if (pruned.isFailed()) {
          expectConsistent(n);
          AWAIT_READY(store_->prune({image("test/other")}, {}));
        }
        expectConsistent(n);
        auto images = store_->images();
        AWAIT_READY(images);
        ASSERT_EQ(1u, images->size()) << "call " << n;
        EXPECT_EQ("test/other", images->front().reference().repository()) << "call " << n;
        // test/app's own layer is gone; the shared base stays.
        std::size_t layers = 0;
        for ([[maybe_unused]] const auto& layer : fs::directory_iterator(storeDir_ / "layers")) ++layers;
        EXPECT_EQ(2u, layers) << "call " << n;
      });
  RecordProperty("disk_calls", static_cast<int>(count));
  EXPECT_GE(count, 5);
}

TEST_F(StoreFaultTest, RecoverUnderEveryFault) {
  testing::FaultyDisk& disk = disk_;
  Future<Nothing> recovered;
  std::unique_ptr<ImageStore> fresh;
  const long count = testing::fault::sweep(
      disk, std::nullopt, ENOSPC,
      [&] {
        emptyStore();
        AWAIT_READY(store_->get(image("test/app")));
        store_.reset();
        // What a crash leaves: a half-extracted layer in staging.
        testing::writeFile(storeDir_ / "staging" / "left-over" / "rootfs" / "half", "x");
      },
      [&] {
        ImageStoreOptions options;
        options.storeDir = storeDir_.string();
        auto puller = puller_;
        auto created = ImageStore::create(runtime_, options, [puller](const messages::Image&) { return puller; });
        if (created.isError()) {
          recovered = created.error();
          return;
        }
        fresh = std::move(*created);
        recovered = fresh->recover();
        recovered.waitFor(testing::kDefaultAwait);
      },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(testing::fault::endedClearly(recovered, n, failedCall, {storeDir_.string()}));
        fresh.reset();
        restartStore();
        expectConsistent(n);
        auto info = store_->get(image("test/app"));
        AWAIT_READY(info);
        expectTrees(info.get(), "test/app", n);
      });
  RecordProperty("disk_calls", static_cast<int>(count));
  EXPECT_GE(count, 3);
}

}  // namespace
}  // namespace prov::store
