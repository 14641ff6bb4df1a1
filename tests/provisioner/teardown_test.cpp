// A Provisioner destroyed where an agent's callbacks run: in the
// continuation of its own destroy() (on its own strand), on a worker, on a
// blocking-pool thread. None of them deadlocks or deletes a process under
// its running handler; the teardown (the stores' waits included) runs off
// the runtime's threads, and the work dir's lock is released once it is
// over, so the next Provisioner gets it.

#include <atomic>
#include <filesystem>

#include <gtest/gtest.h>

#include "actors/async.hpp"
#include "actors/clock.hpp"
#include "actors/runtime.hpp"
#include "fetcher/manifest.hpp"
#include "provisioner/provisioner.hpp"
#include "testkit/image_builder.hpp"
#include "tests/support/await.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::provisioner {
namespace {

namespace fs = std::filesystem;
using testing::TarEntry;

class TeardownTest : public testing::TemporaryDirectoryTest {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    testing::ImageSpec spec;
    spec.architecture = fetcher::hostPlatform().architecture();
    spec.layers = {{TarEntry::file("etc/os", "base")}};
    testing::OciLayout layout(sandbox() / "layout");
    layout.tag(layout.addImage(spec), "v1");
    auto image = parseImage("oci:" + (sandbox() / "layout").string() + ":v1");
    ASSERT_TRUE(image.isSome());
    image_ = *image;
  }

  std::unique_ptr<Provisioner> make(std::chrono::milliseconds lockTimeout = std::chrono::milliseconds(0)) {
    Flags flags;
    flags.workDir = (sandbox() / "work").string();
    flags.imageProviders = "docker";
    flags.imageProvisionerBackend = backend::kCopy;
    flags.lockTimeout = lockTimeout;
    auto created = Provisioner::create(flags, runtime_);
    EXPECT_TRUE(created.isSome()) << created.error().message;
    if (created.isError()) return nullptr;
    auto provisioner = std::move(*created);
    AWAIT_EXPECT_READY(provisioner->recover({}));
    return provisioner;
  }

  // The next Provisioner on the work dir: it gets the lock once the last
  // one's teardown is over.
  void expectTheLockComesBack() {
    auto next = make(std::chrono::seconds(60));
    ASSERT_NE(nullptr, next);
    auto containers = next->containers();
    AWAIT_READY(containers);
    EXPECT_TRUE(containers->empty());
  }

  actors::Runtime runtime_;
  messages::Image image_;
};

TEST_F(TeardownTest, DestroyedInTheContinuationOfItsOwnDestroy) {
  auto provisioner = make();
  ASSERT_NE(nullptr, provisioner);
  AWAIT_READY(provisioner->provision("c1", image_));
  ::testing::internal::CaptureStderr();
  actors::Promise<bool> done;
  std::atomic<bool> onRuntime{false};
  provisioner->destroy("c1").onAny([&] {
    onRuntime = runtime_.onRuntimeThread();
    provisioner.reset();
    done.set(true);
  });
  AWAIT_READY(done.future());
  EXPECT_TRUE(onRuntime.load()) << "the continuation ran off the runtime: the test tests nothing";
  expectTheLockComesBack();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(std::string::npos, err.find("destroyed while running")) << err;
}

TEST_F(TeardownTest, DestroyedOnABlockingThreadAndOnAWorker) {
  auto provisioner = make();
  ASSERT_NE(nullptr, provisioner);
  AWAIT_READY(provisioner->provision("c1", image_));
  AWAIT_READY(provisioner->destroy("c1"));
  std::atomic<bool> onRuntime{false};
  AWAIT_READY(actors::async(runtime_, [&] {
    onRuntime = runtime_.onRuntimeThread();
    provisioner.reset();
  }));
  EXPECT_TRUE(onRuntime.load());
  provisioner = make(std::chrono::seconds(60));
  ASSERT_NE(nullptr, provisioner);

  onRuntime = false;
  actors::Promise<bool> done;
  runtime_.clock().sleep(std::chrono::milliseconds(1)).onAny([&] {
    onRuntime = runtime_.onWorkerThread();
    provisioner.reset();
    done.set(true);
  });
  AWAIT_READY(done.future());
  EXPECT_TRUE(onRuntime.load());
  expectTheLockComesBack();
}

// The runtime's own shutdown waits for a teardown handed over to it.
TEST_F(TeardownTest, TheRuntimeWaitsForAnOffloadedTeardown) {
  auto runtime = std::make_unique<actors::Runtime>();
  Flags flags;
  flags.workDir = (sandbox() / "work").string();
  flags.imageProviders = "docker";
  flags.imageProvisionerBackend = backend::kCopy;
  auto created = Provisioner::create(flags, *runtime);
  ASSERT_TRUE(created.isSome()) << created.error().message;
  std::unique_ptr<Provisioner> provisioner = std::move(*created);
  AWAIT_READY(provisioner->recover({}));
  AWAIT_READY(actors::async(*runtime, [&] { provisioner.reset(); }));
  runtime.reset();  // joins the teardown thread: the lock is free now
  auto again = Provisioner::create(flags, runtime_);
  ASSERT_TRUE(again.isSome()) << again.error().message;
}

}  // namespace
}  // namespace prov::provisioner
