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

#include "tests/store/store_fixture.hpp"
#include "tests/support/faulty_disk.hpp"
#include "tests/support/files.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using testing::TarEntry;

class StoreFaultTest : public ImageStoreTest {
 protected:
  void SetUp() override {
    ImageStoreTest::SetUp();
    const std::vector<TarEntry> base = {TarEntry::directory("etc"), TarEntry::file("etc/os", "base")};
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

  // The message says ENOSPC's text and names a path in the store.
  void expectNamesTheFault(const Error& error, long n) {
    EXPECT_NE(std::string::npos, error.message.find("No space left on device"))
        << "call " << n << ": " << error.message;
    EXPECT_NE(std::string::npos, error.message.find(storeDir_.string())) << "call " << n << ": " << error.message;
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
      auto info = store_->get(image(stored.reference().repository()));
      AWAIT_READY(info);
      expectTrees(info.get(), stored.reference().repository(), n);
    }
  }

  void expectTrees(const ImageInfo& info, const std::string& repo, long n) {
    ASSERT_EQ(2u, info.layers.size()) << "call " << n;
    EXPECT_EQ("base", testing::readFile(fs::path(info.layers[0]) / "etc/os")) << "call " << n;
    if (repo == "test/app") {
      EXPECT_EQ("app", testing::readFile(fs::path(info.layers[1]) / "app/run")) << "call " << n;
      EXPECT_EQ("/bin/sh", fs::read_symlink(fs::path(info.layers[1]) / "app/sh")) << "call " << n;
    } else {
      EXPECT_EQ("other", testing::readFile(fs::path(info.layers[1]) / "other")) << "call " << n;
    }
  }
};

TEST_F(StoreFaultTest, PullUnderEveryFault) {
  testing::FaultyDisk disk;
  Future<ImageInfo> info;
  const long count = testing::fault::sweep(
      disk, std::nullopt, ENOSPC, [&] { emptyStore(); },
      [&] {
        info = store_->get(image("test/app"));
        info.waitFor(testing::kDefaultAwait);
      },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(info.isReady() || info.isFailed()) << "call " << n << ": " << testing::describe(info);
        if (info.isFailed()) {
          EXPECT_TRUE(failedCall) << "call " << n;
          expectNamesTheFault(info.failure(), n);
        }
        expectConsistent(n);
        restartStore();  // what a restart finds is consistent too
        expectConsistent(n);
        auto retried = store_->get(image("test/app"));
        AWAIT_READY(retried);
        expectTrees(retried.get(), "test/app", n);
      });
  RecordProperty("disk_calls", static_cast<int>(count));
  EXPECT_GE(count, 20);
}

TEST_F(StoreFaultTest, PruneUnderEveryFault) {
  testing::FaultyDisk disk;
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
        ASSERT_TRUE(pruned.isReady() || pruned.isFailed()) << "call " << n << ": " << testing::describe(pruned);
        if (pruned.isFailed()) {
          EXPECT_TRUE(failedCall) << "call " << n;
          expectNamesTheFault(pruned.failure(), n);
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
  testing::FaultyDisk disk;
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
        ASSERT_TRUE(recovered.isReady() || recovered.isFailed())
            << "call " << n << ": " << testing::describe(recovered);
        if (recovered.isFailed()) {
          EXPECT_TRUE(failedCall) << "call " << n;
          expectNamesTheFault(recovered.failure(), n);
        }
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
