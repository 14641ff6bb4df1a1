// The Provisioner through the async harness, with a fake registry and the
// real backends (overlay, copy): Mesos's provisioner tests (recover known and
// unknown, nested, nested without parent image, reboot, destroy while
// provisioning, provision failure), image GC (excluded and in-use images and
// their configs kept; by headroom with a fake disk), concurrency without
// deadlock, the work dir lock, and the parsers.

#include <sys/mount.h>
#include <sys/statvfs.h>

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>

#include <fstream>

#include "actors/actors.hpp"
#include "backend/backend.hpp"
#include "provisioner/container_disk.hpp"
#include "provisioner/provisioner.hpp"
#include "store/paths.hpp"
#include "testkit/files.hpp"
#include "testkit/real_registry.hpp"
#include "tests/provisioner/helpers.hpp"
#include "tests/store/store_fixture.hpp"
#include "tests/support/await.hpp"
#include "tests/support/faulty_disk.hpp"

namespace prov::provisioner {
namespace {

namespace fs = std::filesystem;
using store::ImageStoreTest;
using testing::TarEntry;

// A real backend whose every provision() waits until the test releases it
// (a fault-injection fake: the rest is the real backend), each call noted
// (its rootfs path) in the order they came.
class GatedBackend final : public backend::Backend {
 public:
  GatedBackend(actors::Runtime& runtime, const std::string& name) : inner_(*backend::createBackend(runtime, name)) {}

  std::string name() const override { return inner_->name(); }
  Future<backend::RootfsInfo> provision(const std::vector<std::string>& layers, const std::string& rootfs,
                                        const std::string& backendDir) override {
    auto gate = std::make_shared<actors::Promise<Nothing>>();
    bool first = false;
    {
      std::lock_guard lock(mutex_);
      calls_.push_back(rootfs);
      first = calls_.size() == 1;
      if (open_) {
        gate->set(Nothing{});
      } else {
        gates_.push_back(gate);
      }
    }
    if (first) called_.set(Nothing{});
    // Out of the caller's discard: once released, the rootfs is made.
    auto inner = inner_;
    return actors::undiscardable(gate->future().then([inner, layers, rootfs, backendDir] {
      return actors::undiscardable(inner->provision(layers, rootfs, backendDir));
    }));
  }
  Future<bool> destroy(const std::string& rootfs, const std::string& backendDir) override {
    return inner_->destroy(rootfs, backendDir);
  }

  // READY once provision() was first called.
  Future<Nothing> called() { return called_.future(); }
  std::vector<std::string> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  // Lets the call held longest go on.
  void releaseOne() {
    std::shared_ptr<actors::Promise<Nothing>> gate;
    {
      std::lock_guard lock(mutex_);
      if (gates_.empty()) return;
      gate = gates_.front();
      gates_.pop_front();
    }
    gate->set(Nothing{});
  }
  // Every call held, and every later one, goes on.
  void open() {
    std::deque<std::shared_ptr<actors::Promise<Nothing>>> gates;
    {
      std::lock_guard lock(mutex_);
      open_ = true;
      gates.swap(gates_);
    }
    for (auto& gate : gates) gate->set(Nothing{});
  }

 private:
  std::shared_ptr<backend::Backend> inner_;
  mutable std::mutex mutex_;
  std::vector<std::string> calls_;
  std::deque<std::shared_ptr<actors::Promise<Nothing>>> gates_;
  bool open_ = false;
  actors::Promise<Nothing> called_;
};

// Hands the provisioner a backend the test keeps a handle on.
class SharedBackend final : public backend::Backend {
 public:
  explicit SharedBackend(std::shared_ptr<backend::Backend> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return inner_->name(); }
  Future<backend::RootfsInfo> provision(const std::vector<std::string>& layers, const std::string& rootfs,
                                        const std::string& backendDir) override {
    return inner_->provision(layers, rootfs, backendDir);
  }
  Future<bool> destroy(const std::string& rootfs, const std::string& backendDir) override {
    return inner_->destroy(rootfs, backendDir);
  }

 private:
  std::shared_ptr<backend::Backend> inner_;
};

class ProvisionerTest : public ImageStoreTest {
 protected:
  void SetUp() override {
    ImageStoreTest::SetUp();
    store_.reset();  // the provisioner makes its own
    workDir_ = sandbox() / "work";
    publish("library/alpine", "latest", {{TarEntry::file("etc/os", "alpine")}, {TarEntry::file("bin/sh", "sh")}});
    publish("library/debian", "latest", {{TarEntry::file("etc/os", "debian")}});
    start();
  }

  void TearDown() override {
    if (provisioner_) fixture::destroyAll(*provisioner_);
    provisioner_.reset();
    ImageStoreTest::TearDown();
    EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(sandbox())) << "a mount leaked";
  }

  // The store over workDir_/store/docker and every backend (`replacement`
  // in place of its namesake), `backendName` the default.
  Try<Provisioner::Parts> makeParts(const std::string& backendName,
                                    std::shared_ptr<backend::Backend> replacement = nullptr) {
    Provisioner::Parts parts;
    parts.workDir = workDir_.string();
    store::ImageStoreOptions options;
    options.storeDir = (workDir_ / "store/docker").string();
    options.syncLayers = false;
    auto puller = puller_;
    auto store = store::ImageStore::create(runtime_, options, [puller](const messages::Image&) { return puller; });
    if (store.isError()) return store.error();
    parts.stores[store::kDockerProvider] = std::move(*store);
    for (const char* name : {backend::kOverlay, backend::kCopy, backend::kBind}) {
      auto b = backend::createBackend(runtime_, name);
      if (b.isError()) return b.error();
      parts.backends[name] = std::move(*b);
    }
    if (replacement) parts.backends[replacement->name()] = std::make_unique<SharedBackend>(replacement);
    parts.defaultBackend = backendName;
    return parts;
  }

  // A provisioner over workDir_, recovered with `known`.
  void start(const std::set<std::string>& known = {}, std::string backendName = backend::kOverlay,
             std::optional<ImageGcConfig> gc = {}, DiskSpaceOf diskSpace = {},
             std::shared_ptr<backend::Backend> replacement = nullptr) {
    provisioner_.reset();
    auto parts = makeParts(backendName, replacement);
    ASSERT_TRUE(parts.isSome()) << parts.error().message;
    parts->imageGc = gc;
    parts->diskSpace = diskSpace;
    fixture::start(runtime_, std::move(*parts), known, provisioner_);
  }

  fs::path containerDir(const std::string& id) const { return fixture::containerDir(workDir_, id); }

  std::size_t imageCount() {
    auto images = provisioner_->images();
    EXPECT_TRUE(images.waitFor(std::chrono::seconds(15)) && images.isReady());
    return images.isReady() ? images.get().size() : 0;
  }

  // The test's work dir on a tmpfs of `size` at <sandbox>/small, for real
  // statvfs figures and a real full disk; the provisioner (its containers
  // destroyed) goes before the file system does.
  class SmallWorkDir {
   public:
    SmallWorkDir(ProvisionerTest& test, const std::string& size) : test_(test), path_(test.sandbox() / "small") {
      fs::create_directories(path_);
      mounted_ = ::mount("tmpfs", path_.c_str(), "tmpfs", 0, ("size=" + size + ",mode=0755").c_str()) == 0;
      EXPECT_TRUE(mounted_) << std::strerror(errno);
      test_.workDir_ = path_ / "work";
    }
    ~SmallWorkDir() {
      if (test_.provisioner_) fixture::destroyAll(*test_.provisioner_);
      test_.provisioner_.reset();
      if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
    }
    bool mounted() const { return mounted_; }
    const fs::path& path() const { return path_; }

   private:
    ProvisionerTest& test_;
    const fs::path path_;
    bool mounted_ = false;
  };

  fs::path workDir_;
  std::unique_ptr<Provisioner> provisioner_;
};

TEST_F(ProvisionerTest, ProvisionAndDestroy) {
  auto info = provisioner_->provision("c1", dockerImage("alpine"));
  AWAIT_READY(info);
  EXPECT_EQ("overlay", info->backend);
  EXPECT_EQ("alpine", testing::readFile(fs::path(info->rootfs) / "etc/os"));
  EXPECT_EQ("sh", testing::readFile(fs::path(info->rootfs) / "bin/sh"));
  EXPECT_FALSE(info->ephemeralVolumes.empty()) << "overlay reports its upper and work dirs";
  EXPECT_EQ("docker://docker.io/library/alpine:latest", info->image->key());
  EXPECT_TRUE(fs::exists(containerDir("c1") / "layers"));
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c1"));
  EXPECT_FALSE(fs::exists(containerDir("c1")));
  AWAIT_ASSERT_EQ(false, provisioner_->destroy("c1"));
}

// Parts without a default backend (the command line without
// --image_provisioner_backend): the provisions use the one the host suits,
// and each says which it used.
TEST_F(ProvisionerTest, WithoutADefaultBackendProvisionsUseTheOneTheHostSuits) {
  start({}, "");
  const std::string suited = backend::defaultBackend((workDir_ / "provisioner").string());
  auto first = provisioner_->provision("c1", dockerImage("alpine"));
  auto second = provisioner_->provision("c2", dockerImage("debian"));
  AWAIT_READY(first);
  AWAIT_READY(second);
  EXPECT_EQ(suited, first->backend);
  EXPECT_EQ(suited, second->backend);
  EXPECT_EQ("alpine", testing::readFile(fs::path(first->rootfs) / "etc/os"));
  EXPECT_EQ((containerDir("c2") / "backends" / suited / "rootfses").string(), fs::path(second->rootfs).parent_path());
  // Recorded with its backend: a new provisioner destroys it.
  start({"c1", "c2"}, "");
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c1"));
  EXPECT_FALSE(fs::exists(containerDir("c1")));
}

// The backend the host suits is not among the provisioner's: the start and
// a pull are fine; a provision fails naming it and what there is, and
// makes no rootfs.
TEST_F(ProvisionerTest, ASuitedBackendThatIsMissingFailsTheProvisionNotTheStart) {
  provisioner_.reset();
  auto parts = makeParts("");
  ASSERT_TRUE(parts.isSome()) << parts.error().message;
  const std::string suited = backend::defaultBackend((workDir_ / "provisioner").string());
  parts->backends.erase(suited);
  fixture::start(runtime_, std::move(*parts), {}, provisioner_);
  AWAIT_READY(provisioner_->pullImage(dockerImage("alpine")));
  auto failed = provisioner_->provision("c1", dockerImage("alpine"));
  AWAIT_FAILED(failed);
  EXPECT_EQ(ErrorKind::Unsupported, failed.failure().kind);
  EXPECT_NE(std::string::npos, failed.failure().message.find("container 'c1': the backend this machine suits, '" +
                                                             suited + "', is not among the provisioner's ("))
      << failed.failure().message;
  EXPECT_FALSE(fs::exists(containerDir("c1") / "backends"));
  EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(workDir_));
  AWAIT_READY(provisioner_->destroy("c1"));
}

// The container's directory cannot be removed (a mount inside it that is
// not the provisioner's): destroy fails naming the cause, instead of never
// returning, and keeps the container; once the mount is gone, a second
// destroy succeeds (not the first one's failure again).
TEST_F(ProvisionerTest, ADestroyThatCannotRemoveTheDirectoryFailsAndCanBeRetried) {
  AWAIT_READY(provisioner_->provision("c1", dockerImage("alpine")));
  const fs::path foreign = containerDir("c1") / "foreign";
  const fs::path source = sandbox() / "elsewhere";
  fs::create_directories(foreign);
  fs::create_directories(source);
  ASSERT_EQ(0, ::mount(source.c_str(), foreign.c_str(), nullptr, MS_BIND, nullptr)) << std::strerror(errno);
  auto failed = provisioner_->destroy("c1");
  AWAIT_FAILED(failed);
  EXPECT_EQ(ErrorKind::IO, failed.failure().kind);
  EXPECT_NE(std::string::npos, failed.failure().message.find("foreign")) << failed.failure().message;
  auto containers = provisioner_->containers();
  AWAIT_READY(containers);
  EXPECT_EQ(1u, containers->size());
  ASSERT_EQ(0, ::umount2(foreign.c_str(), MNT_DETACH)) << std::strerror(errno);
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c1"));
  EXPECT_FALSE(fs::exists(containerDir("c1")));
}

// ---- disk faults: the N-th call fails with ENOSPC, for every N -----------------

class ProvisionerFaultTest : public ProvisionerTest {
 protected:
  // Installed for the whole test, TearDown included: background work (a
  // store's gc sweep) may still call it until the provisioner is gone.
  testing::FaultyDisk disk_;

  // No container's rootfs left behind by a failed provision, and no mount.
  void expectNoRootfsOf(const std::string& id, long n) {
    auto containers = provisioner_->containers();
    AWAIT_READY(containers);
    for (const auto& c : containers.get()) {
      if (c.id == id) {
        EXPECT_TRUE(c.rootfses.empty()) << "call " << n;
      }
    }
    for (const char* name : {backend::kOverlay, backend::kCopy}) {
      const fs::path rootfses = containerDir(id) / "backends" / name / "rootfses";
      EXPECT_TRUE(!fs::exists(rootfses) || fs::is_empty(rootfses)) << "call " << n << ": " << name;
    }
    EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(containerDir(id))) << "call " << n;
  }

  // Provision with `backendName` under every fault, the image already pulled.
  // `image` is alpine (two layers) or debian (one, for bind).
  void provisionUnderEveryFault(const char* backendName, const std::string& image = "alpine") {
    start({}, backendName);
    AWAIT_READY(provisioner_->provision("warm", dockerImage(image)));
    testing::FaultyDisk& disk = disk_;
    Future<ProvisionInfo> info;
    const long count = testing::fault::sweep(
        disk, std::nullopt, ENOSPC,
        [&] {
          auto destroyed = provisioner_->destroy("c1");
          AWAIT_READY(destroyed);
        },
        [&] {
          info = provisioner_->provision("c1", dockerImage(image));
          info.waitFor(testing::kDefaultAwait);
        },
        [&](long n, const std::optional<std::string>& failedCall) {
          ASSERT_TRUE(testing::fault::endedClearly(info, n, failedCall, {workDir_.string()}));
          if (info.isFailed()) {
            expectNoRootfsOf("c1", n);
            info = provisioner_->provision("c1", dockerImage(image));
            AWAIT_READY(info);
          }
          EXPECT_EQ(image, testing::readFile(fs::path(info->rootfs) / "etc/os")) << "call " << n;
          if (image == "alpine") {
            EXPECT_EQ("sh", testing::readFile(fs::path(info->rootfs) / "bin/sh")) << "call " << n;
          }
        });
    RecordProperty("disk_calls", static_cast<int>(count));
    EXPECT_GE(count, 5);
  }

  // Destroy a container with two rootfses (one nested) under every fault.
  void destroyUnderEveryFault(const char* backendName) {
    start({}, backendName);
    testing::FaultyDisk& disk = disk_;
    Future<bool> destroyed;
    const long count = testing::fault::sweep(
        disk, std::nullopt, ENOSPC,
        [&] {
          auto exists = provisioner_->containers();
          AWAIT_READY(exists);
          if (!exists->empty()) {
            AWAIT_READY(provisioner_->destroy("c1"));
          }
          AWAIT_READY(provisioner_->provision("c1", dockerImage("alpine")));
          AWAIT_READY(provisioner_->provision("c1/n1", dockerImage("debian")));
        },
        [&] {
          destroyed = provisioner_->destroy("c1");
          destroyed.waitFor(testing::kDefaultAwait);
        },
        [&](long n, const std::optional<std::string>& failedCall) {
          ASSERT_TRUE(testing::fault::endedClearly(destroyed, n, failedCall, {workDir_.string()}));
          if (destroyed.isFailed()) {
            destroyed = provisioner_->destroy("c1");
            AWAIT_READY(destroyed);
            EXPECT_TRUE(destroyed.get()) << "call " << n << ": the retry found nothing to destroy";
          }
          EXPECT_FALSE(fs::exists(containerDir("c1"))) << "call " << n;
          EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(workDir_)) << "call " << n;
          auto containers = provisioner_->containers();
          AWAIT_READY(containers);
          EXPECT_TRUE(containers->empty()) << "call " << n;
        });
    RecordProperty("disk_calls", static_cast<int>(count));
    EXPECT_GE(count, 20);
  }
};

TEST_F(ProvisionerFaultTest, ProvisionWithCopy) { provisionUnderEveryFault(backend::kCopy); }
TEST_F(ProvisionerFaultTest, ProvisionWithOverlay) { provisionUnderEveryFault(backend::kOverlay); }
TEST_F(ProvisionerFaultTest, ProvisionWithBind) { provisionUnderEveryFault(backend::kBind, "debian"); }

// Recover with one container known and one not, under every fault: it
// fails naming the errno and a path, or succeeds; a recover after it
// without faults keeps the known one whole and removes the other.
TEST_F(ProvisionerFaultTest, RecoverUnderEveryFault) {
  Future<Nothing> recovered;
  testing::FaultyDisk& disk = disk_;
  const long count = testing::fault::sweep(
      disk, std::nullopt, ENOSPC,
      [&] {
        provisioner_.reset();
        fs::remove_all(workDir_ / "provisioner");
        start({}, backend::kCopy);
        AWAIT_READY(provisioner_->provision("known", dockerImage("alpine")));
        AWAIT_READY(provisioner_->provision("unknown", dockerImage("debian")));
        provisioner_.reset();
      },
      [&] {
        auto parts = makeParts(backend::kCopy);
        if (parts.isError()) {
          recovered = parts.error();
          return;
        }
        auto created = Provisioner::create(std::move(*parts), runtime_);
        if (created.isError()) {
          recovered = created.error();
          return;
        }
        provisioner_ = std::move(*created);
        recovered = provisioner_->recover({"known"});
        recovered.waitFor(testing::kDefaultAwait);
      },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(testing::fault::endedClearly(recovered, n, failedCall, {workDir_.string()}));
        provisioner_.reset();
        start({"known"}, backend::kCopy);
        auto containers = provisioner_->containers();
        AWAIT_READY(containers);
        ASSERT_EQ(1u, containers->size()) << "call " << n;
        EXPECT_EQ("known", containers->front().id) << "call " << n;
        ASSERT_EQ(1u, containers->front().rootfses.size()) << "call " << n;
        const auto& rootfs = containers->front().rootfses.front();
        const fs::path path = containerDir("known") / "backends" / rootfs.backend() / "rootfses" / rootfs.id();
        EXPECT_EQ("alpine", testing::readFile(path / "etc/os")) << "call " << n;
        EXPECT_FALSE(fs::exists(containerDir("unknown"))) << "call " << n;
      });
  RecordProperty("disk_calls", static_cast<int>(count));
  EXPECT_GE(count, 5);
}
// The automatic image GC (headroom always short here) under every fault:
// each round ends; a round that failed is counted as failed and changes
// nothing it did not finish; the next round, without faults, removes every
// image and its layers.
TEST_F(ProvisionerFaultTest, AutomaticImageGcUnderEveryFault) {
  provisioner_.reset();
  runtime_.clock().pause();
  ImageGcConfig gc;
  gc.imageDiskHeadroom = 0.5;
  gc.imageDiskWatchInterval = std::chrono::seconds(10);
  start({}, backend::kCopy, gc, [](const std::string&) -> Try<DiskSpace> { return DiskSpace{1000, 0}; });
  auto metric = [&](const std::string& name) {
    auto metrics = provisioner_->metrics();
    EXPECT_TRUE(metrics.waitFor(testing::kDefaultAwait) && metrics.isReady());
    return metrics.isReady() ? metrics->at(name) : -1.0;
  };
  // One GC round: the clock moves past the interval, and the round's prune
  // ends. Returns whether it failed.
  auto round = [&] {
    const double prunes = metric("provisioner/image_gc_prunes");
    const double failures = metric("provisioner/image_gc_failures");
    runtime_.clock().advance(std::chrono::seconds(11));
    waitFor([&] { return metric("provisioner/image_gc_prunes") > prunes; });
    EXPECT_EQ(prunes + 1, metric("provisioner/image_gc_prunes")) << "a round ends";
    return metric("provisioner/image_gc_failures") > failures;
  };
  const fs::path layers = workDir_ / "store/docker/layers";
  testing::FaultyDisk& disk = disk_;
  bool failed = false;
  const long count = testing::fault::sweep(
      disk, std::nullopt, ENOSPC,
      [&] {
        AWAIT_READY(provisioner_->pullImage(dockerImage("alpine")));
        AWAIT_READY(provisioner_->pullImage(dockerImage("debian")));
      },
      [&] { failed = round(); },
      [&](long n, const std::optional<std::string>& failedCall) {
        if (failed) {
          EXPECT_TRUE(failedCall.has_value()) << "call " << n << ": a round failed without a fault";
        }
        // What the index still lists is whole: it provisions.
        auto images = provisioner_->images();
        AWAIT_READY(images);
        for (const auto& stored : images.get()) {
          const std::string name = stored.reference().repository() == "library/alpine" ? "alpine" : "debian";
          auto info = provisioner_->provision("check", dockerImage(name));
          AWAIT_READY(info);
          EXPECT_EQ(name, testing::readFile(fs::path(info->rootfs) / "etc/os")) << "call " << n;
          AWAIT_READY(provisioner_->destroy("check"));
        }
        EXPECT_FALSE(round()) << "call " << n << ": the round after the fault";
        EXPECT_EQ(0u, imageCount()) << "call " << n;
        EXPECT_TRUE(fs::is_empty(layers)) << "call " << n << ": " << testing::treeOf(layers).size() << " entries";
      });
  RecordProperty("disk_calls", static_cast<int>(count));
  EXPECT_GE(count, 5);
  EXPECT_GE(metric("provisioner/image_gc_failures"), 1.0) << "some fault failed a round";
}
TEST_F(ProvisionerFaultTest, DestroyNestedWithCopy) { destroyUnderEveryFault(backend::kCopy); }
TEST_F(ProvisionerFaultTest, DestroyNestedWithOverlay) { destroyUnderEveryFault(backend::kOverlay); }

TEST_F(ProvisionerTest, RecoverKeepsKnownContainersAndDestroysUnknownOnes) {
  auto known = provisioner_->provision("known", dockerImage("alpine"));
  auto unknown = provisioner_->provision("unknown", dockerImage("alpine"));
  AWAIT_READY(known);
  AWAIT_READY(unknown);
  start({"known"});
  EXPECT_TRUE(fs::exists(known->rootfs));
  EXPECT_EQ("alpine", testing::readFile(fs::path(known->rootfs) / "etc/os"));
  EXPECT_FALSE(fs::exists(containerDir("unknown")));
  auto containers = provisioner_->containers();
  AWAIT_READY(containers);
  ASSERT_EQ(1u, containers->size());
  EXPECT_EQ("known", containers->front().id);
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("known"));
}

// A kill while a rootfs is being made or taken down leaves its record entry
// marked unfinished: recover takes that rootfs down (unmounts, removes) and
// drops it, also for a known container. A record written before the mark
// existed (no field 6) means "whole", and is kept.
// A host crash under --overlay_volatile: the rootfses' mounts are gone,
// their scratch dirs carry the kernel's volatile mark (the kernel would
// refuse to mount them again). Recover destroys the unknown container's,
// keeps the known one's unmounted and never mounts it; a new rootfs for
// that container works, and destroying it removes everything.
TEST_F(ProvisionerTest, AfterACrashVolatileRootfsesAreDestroyedOrKeptNeverRemounted) {
  auto made = backend::createBackend(runtime_, backend::kOverlay, {.overlayVolatile = true});
  ASSERT_TRUE(made.isSome()) << made.error().message;
  std::shared_ptr<backend::Backend> volatileOverlay = std::move(*made);
  start({}, backend::kOverlay, {}, {}, volatileOverlay);
  auto kept = provisioner_->provision("kept", dockerImage("alpine"));
  auto gone = provisioner_->provision("gone", dockerImage("alpine"));
  AWAIT_READY(kept);
  AWAIT_READY(gone);
  ASSERT_EQ(2u, kept->ephemeralVolumes.size());
  EXPECT_TRUE(fs::exists(fs::path(kept->ephemeralVolumes[1]) / "work/incompat/volatile"));
  // The crash: the process and its mounts go, the disk stays.
  provisioner_.reset();
  for (const auto& rootfs : {kept->rootfs, gone->rootfs}) ASSERT_EQ(0, ::umount2(rootfs.c_str(), MNT_DETACH)) << rootfs;
  start({"kept"}, backend::kOverlay, {}, {}, volatileOverlay);
  EXPECT_FALSE(fs::exists(containerDir("gone")));
  EXPECT_TRUE(fs::exists(containerDir("kept")));
  EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(workDir_)) << "nothing was mounted again";
  auto again = provisioner_->provision("kept", dockerImage("alpine"));
  AWAIT_READY(again);
  EXPECT_EQ("alpine", testing::readFile(fs::path(again->rootfs) / "etc/os"));
  AWAIT_EXPECT_EQ(true, provisioner_->destroy("kept"));
  EXPECT_FALSE(fs::exists(containerDir("kept")));
  EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(workDir_));
}

TEST_F(ProvisionerTest, RecoverTakesDownARootfsLeftUnfinished) {
  auto unfinished = provisioner_->provision("c1", dockerImage("alpine"));
  auto whole = provisioner_->provision("c2", dockerImage("alpine"));
  AWAIT_READY(unfinished);
  AWAIT_READY(whole);
  auto mark = [&](const std::string& id, bool value) {
    messages::ContainerRecord record;
    ASSERT_TRUE(record.ParseFromString(testing::readFile(containerDir(id) / "layers")));
    ASSERT_EQ(1, record.rootfses_size());
    EXPECT_FALSE(record.rootfses(0).unfinished()) << "a provision that returned is marked whole";
    record.mutable_rootfses(0)->set_unfinished(value);
    testing::writeFile(containerDir(id) / "layers", record.SerializeAsString());
  };
  mark("c1", true);
  mark("c2", false);     // the former layout: the field absent
  provisioner_.reset();  // the mounts stay, as after a kill
  start({"c1", "c2"});
  auto containers = provisioner_->containers();
  AWAIT_READY(containers);
  ASSERT_EQ(2u, containers->size());
  for (const auto& c : containers.get()) {
    EXPECT_EQ(c.id == "c1" ? 0u : 1u, c.rootfses.size()) << c.id;
  }
  EXPECT_FALSE(fs::exists(unfinished->rootfs));
  EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(containerDir("c1")));
  EXPECT_EQ("alpine", testing::readFile(fs::path(whole->rootfs) / "etc/os"));
  messages::ContainerRecord record;
  ASSERT_TRUE(record.ParseFromString(testing::readFile(containerDir("c1") / "layers")));
  EXPECT_EQ(0, record.rootfses_size()) << "the record no longer lists it";
}

// Records are not fsynced: after a machine crash one may come back empty.
// Recover still finds the container's rootfs on disk, keeps it when known
// and destroys it cleanly.
TEST_F(ProvisionerTest, AContainerWhoseRecordCameBackEmptyIsRecoveredFromTheDisk) {
  start({}, backend::kCopy);
  auto info = provisioner_->provision("c1", dockerImage("alpine"));
  AWAIT_READY(info);
  AWAIT_READY(provisioner_->provision("c2", dockerImage("alpine")));
  for (const char* id : {"c1", "c2"}) std::ofstream(containerDir(id) / "layers", std::ios::trunc);
  start({"c1"}, backend::kCopy);
  EXPECT_FALSE(fs::exists(containerDir("c2"))) << "unknown: destroyed";
  auto containers = provisioner_->containers();
  AWAIT_READY(containers);
  ASSERT_EQ(1u, containers->size());
  ASSERT_EQ(1u, containers->front().rootfses.size());
  EXPECT_EQ("copy", containers->front().rootfses[0].backend());
  EXPECT_EQ(fs::path(info->rootfs).filename().string(), containers->front().rootfses[0].id());
  EXPECT_EQ("alpine", testing::readFile(fs::path(info->rootfs) / "etc/os"));
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c1"));
  EXPECT_FALSE(fs::exists(containerDir("c1")));
}

TEST_F(ProvisionerTest, NestedContainersAreDestroyedChildrenFirst) {
  AWAIT_READY(provisioner_->provision("parent", dockerImage("alpine")));
  AWAIT_READY(provisioner_->provision("parent/child", dockerImage("debian")));
  AWAIT_READY(provisioner_->provision("parent/child/grandchild", dockerImage("alpine")));
  EXPECT_TRUE(fs::exists(containerDir("parent/child/grandchild") / "layers"));
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("parent"));
  EXPECT_FALSE(fs::exists(containerDir("parent")));
}

TEST_F(ProvisionerTest, NestedWithoutParentImage) {
  auto child = provisioner_->provision("parent/child", dockerImage("debian"));
  AWAIT_READY(child);
  EXPECT_EQ("debian", testing::readFile(fs::path(child->rootfs) / "etc/os"));
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("parent"));
  EXPECT_FALSE(fs::exists(containerDir("parent")));
}

TEST_F(ProvisionerTest, RebootDestroysEveryContainerNestedOnesIncluded) {
  AWAIT_READY(provisioner_->provision("a", dockerImage("alpine")));
  AWAIT_READY(provisioner_->provision("a/b", dockerImage("debian")));
  AWAIT_READY(provisioner_->provision("c/d", dockerImage("debian")));
  start({});
  EXPECT_FALSE(fs::exists(containerDir("a")));
  EXPECT_FALSE(fs::exists(containerDir("c")));
  AWAIT_ASSERT_EQ(0u, provisioner_->containers().then([](const std::vector<ContainerInfo>& v) { return v.size(); }));
}

TEST_F(ProvisionerTest, DestroyWhileProvisioningWaitsForTheProvision) {
  publish("test/slow", "latest", {{TarEntry::file("big", randomBytes(4 * 1024))}});
  registry_.trickle(1);
  auto provisioning = provisioner_->provision("c", dockerImage(registry_.hostPort() + "/test/slow"));
  waitFor([&] { return registry_.count("/blobs/") >= 2; });
  auto destroyed = provisioner_->destroy("c");
  // The destroy waits for the provision, which gives up: the container is
  // going away, so no rootfs is made for it.
  AWAIT_FAILED_FOR(provisioning, std::chrono::seconds(60));
  EXPECT_EQ(ErrorKind::Unavailable, provisioning.failure().kind) << provisioning.failure().message;
  EXPECT_NE(std::string::npos, provisioning.failure().message.find("being destroyed"));
  AWAIT_ASSERT_EQ(true, destroyed);
  EXPECT_FALSE(fs::exists(containerDir("c")));
  // And the image it pulled is in the store for the next container.
  AWAIT_READY(provisioner_->provision("next", dockerImage(registry_.hostPort() + "/test/slow")));
}

TEST_F(ProvisionerTest, ProvisionFailureLeavesNoRootfs) {
  auto missing = provisioner_->provision("c", dockerImage(registry_.hostPort() + "/test/missing"));
  AWAIT_FAILED(missing);
  EXPECT_EQ(ErrorKind::NotFound, missing.failure().kind) << missing.failure().message;
  EXPECT_FALSE(fs::exists(containerDir("c") / "backends"));
  auto bad = provisioner_->provision("../escape", dockerImage("alpine"));
  AWAIT_FAILED(bad);
  EXPECT_EQ(ErrorKind::InvalidArgument, bad.failure().kind);
}

// Discarded while its image is still being pulled: no rootfs was ever made
// (the directory for them does not exist), and no record names one.
TEST_F(ProvisionerTest, ADiscardedProvisionCleansUpAfterItself) {
  publish("test/slow", "latest", {{TarEntry::file("big", randomBytes(4 * 1024))}});
  registry_.trickle(1);
  auto provisioning = provisioner_->provision("c", dockerImage(registry_.hostPort() + "/test/slow"));
  waitFor([&] { return registry_.count("/blobs/") >= 2; });
  provisioning.discard();
  AWAIT_DISCARDED(provisioning);
  EXPECT_FALSE(fs::exists(containerDir("c") / "backends/overlay/rootfses"));
  auto containers = provisioner_->containers();
  AWAIT_READY(containers);
  for (const auto& c : containers.get()) EXPECT_TRUE(c.rootfses.empty()) << c.id;
}

// Discarded while the backend assembles the rootfs: the rootfs it finishes
// is taken down again and the caller sees DISCARDED.
TEST_F(ProvisionerTest, ARootfsFinishedAfterTheDiscardIsTakenDownAgain) {
  auto held = std::make_shared<GatedBackend>(runtime_, backend::kOverlay);
  start({}, backend::kOverlay, {}, {}, held);
  auto provisioning = provisioner_->provision("c", dockerImage("alpine"));
  AWAIT_READY(held->called());
  const fs::path rootfses = containerDir("c") / "backends/overlay/rootfses";
  EXPECT_TRUE(fs::exists(rootfses));
  provisioning.discard();
  held->releaseOne();
  AWAIT_DISCARDED(provisioning);
  // The rootfs was mounted after the discard, and is gone again.
  EXPECT_TRUE(fs::is_empty(rootfses));
  EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(workDir_));
  auto containers = provisioner_->containers();
  AWAIT_READY(containers);
  for (const auto& c : containers.get()) EXPECT_TRUE(c.rootfses.empty()) << c.id;
}

// A burst is assembled a bounded number of rootfses at a time: the rest
// wait their turn (the most urgent first), so the first containers are
// handed out before the burst ends, not all of them together at its end.
TEST_F(ProvisionerTest, ABurstIsAssembledABoundedNumberAtATimeTheMostUrgentFirst) {
  auto gated = std::make_shared<GatedBackend>(runtime_, backend::kOverlay);
  start({}, backend::kOverlay, {}, {}, gated);
  AWAIT_READY(provisioner_->pullImage(dockerImage("alpine")));
  const std::size_t bound = 4 * runtime_.blockingThreads();
  std::vector<Future<ProvisionInfo>> burst;
  for (std::size_t i = 0; i < bound + 3; ++i) {
    burst.push_back(provisioner_->provision("c" + std::to_string(i), dockerImage("alpine")));
  }
  waitFor([&] { return gated->calls().size() >= bound; });
  runtime_.settle();  // nothing more is on its way: the others wait for a slot
  EXPECT_EQ(bound, gated->calls().size());

  messages::Image urgentImage = dockerImage("alpine");
  urgentImage.set_priority(10);
  auto urgent = provisioner_->provision("urgent", urgentImage);
  runtime_.settle();
  EXPECT_EQ(bound, gated->calls().size());
  EXPECT_FALSE(urgent.isReady());

  // One rootfs done: its slot goes to the urgent provision, asked last.
  gated->releaseOne();
  waitFor([&] { return gated->calls().size() > bound; });
  runtime_.settle();
  const auto calls = gated->calls();
  ASSERT_EQ(bound + 1, calls.size());
  EXPECT_NE(std::string::npos, calls.back().find("/urgent/")) << calls.back();

  gated->open();
  for (auto& provisioned : burst) AWAIT_READY(provisioned);
  AWAIT_READY(urgent);
  EXPECT_EQ(bound + 4, gated->calls().size());
}

TEST_F(ProvisionerTest, PruneKeepsExcludedAndInUseImagesWithTheirConfigs) {
  publish("library/unused", "latest", {{TarEntry::file("u", "u")}});
  publish("library/volume", "latest", {{TarEntry::file("v", "v")}});
  auto unused = provisioner_->provision("gone", dockerImage("unused"));
  AWAIT_READY(unused);
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("gone"));
  // One container with two rootfses: its image and an image volume.
  auto own = provisioner_->provision("c", dockerImage("alpine"));
  auto volume = provisioner_->provision("c", dockerImage("volume"));
  auto kept = provisioner_->pullImage(dockerImage("debian"));
  AWAIT_READY(own);
  AWAIT_READY(volume);
  AWAIT_READY(kept);
  EXPECT_EQ(4u, imageCount());
  AWAIT_READY(provisioner_->pruneImages({dockerImage("debian:latest")}));
  const std::string store = (workDir_ / "store/docker").string();
  auto layersOf = [&](const messages::StoredImage& image) {
    std::vector<fs::path> paths;
    for (const auto& id : image.layer_ids()) paths.push_back(store::paths::layerRootfs(store, id));
    paths.push_back(store::paths::config(store, image.config_digest()));
    return paths;
  };
  for (const auto& path : layersOf(*own->image)) EXPECT_TRUE(fs::exists(path)) << path;
  for (const auto& path : layersOf(*volume->image)) EXPECT_TRUE(fs::exists(path)) << path;
  for (const auto& path : layersOf(kept.get())) EXPECT_TRUE(fs::exists(path)) << path;
  for (const auto& path : layersOf(*unused->image)) EXPECT_FALSE(fs::exists(path)) << path;
  EXPECT_EQ(3u, imageCount()) << "the excluded image and the two in use stay listed; the unused one goes";
  // The containers still work, and a prune after they are gone frees their layers.
  EXPECT_EQ("v", testing::readFile(fs::path(volume->rootfs) / "v"));
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c"));
  AWAIT_READY(provisioner_->pruneImages({}));
  for (const auto& path : layersOf(*own->image)) EXPECT_FALSE(fs::exists(path)) << path;
  EXPECT_EQ(0u, imageCount());
}

TEST_F(ProvisionerTest, ImageGcRunsWhenFreeSpaceFallsBelowTheHeadroom) {
  runtime_.clock().pause();
  auto free = std::make_shared<std::atomic<double>>(0.5);
  ImageGcConfig gc;
  gc.imageDiskHeadroom = 0.2;
  gc.imageDiskWatchInterval = std::chrono::seconds(10);
  gc.excludedImages = {dockerImage("debian")};
  start({}, backend::kOverlay, gc, [free](const std::string&) -> Try<DiskSpace> {
    return DiskSpace{1000, static_cast<std::uint64_t>(free->load() * 1000)};
  });
  AWAIT_READY(provisioner_->pullImage(dockerImage("alpine")));
  AWAIT_READY(provisioner_->pullImage(dockerImage("debian")));
  runtime_.clock().advance(std::chrono::seconds(11));
  runtime_.settle();
  EXPECT_EQ(2u, imageCount()) << "enough headroom: nothing pruned";
  free->store(0.1);
  runtime_.clock().advance(std::chrono::seconds(10));
  waitFor([&] { return imageCount() == 1; });
  auto images = provisioner_->images();
  AWAIT_READY(images);
  ASSERT_EQ(1u, images->size());
  EXPECT_EQ("docker://docker.io/library/debian:latest", images->front().key());
  auto metrics = provisioner_->metrics();
  AWAIT_READY(metrics);
  EXPECT_GE(metrics->at("provisioner/image_prunes"), 1.0);
  // The clock stays paused: no further check starts while the test tears down.
}

// A real full disk: the work dir on a 4 MiB tmpfs. A provision whose image
// does not fit fails with ENOSPC's text and the staging path, and leaves
// the store as it was; automatic image GC (headroom 0.7, real statvfs)
// then prunes the unused image, and the provision retried succeeds.
TEST_F(ProvisionerTest, AFullDiskFailsTheProvisionClearlyAndImageGcMakesRoom) {
  provisioner_.reset();
  runtime_.clock().pause();
  SmallWorkDir small(*this, "4m");
  ASSERT_TRUE(small.mounted());
  publish("test/medium", "latest", {{TarEntry::file("medium", randomBytes(1536 * 1024))}});
  publish("test/large", "latest", {{TarEntry::file("large", randomBytes(3 * 1024 * 1024))}});
  ImageGcConfig gc;
  gc.imageDiskHeadroom = 0.7;
  gc.imageDiskWatchInterval = std::chrono::seconds(10);
  start({}, backend::kOverlay, gc);
  AWAIT_READY(provisioner_->pullImage(dockerImage(registry_.hostPort() + "/test/medium")));
  const auto storeBefore = testing::treeOf(workDir_ / "store");

  auto failed = provisioner_->provision("c", dockerImage(registry_.hostPort() + "/test/large"));
  AWAIT_FAILED(failed);
  const std::string& message = failed.failure().message;
  EXPECT_NE(std::string::npos, message.find("No space left on device")) << message;
  EXPECT_NE(std::string::npos, message.find((workDir_ / "store/docker/staging").string())) << message;
  waitFor([&] { return testing::treeOf(workDir_ / "store") == storeBefore; });
  EXPECT_EQ(storeBefore, testing::treeOf(workDir_ / "store")) << "the store is as it was";
  EXPECT_EQ(1u, imageCount());
  EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(workDir_));

  // 1.5 of 4 MiB used: under the headroom, so the next check prunes.
  runtime_.clock().advance(std::chrono::seconds(11));
  waitFor([&] { return imageCount() == 0; });
  ASSERT_EQ(0u, imageCount());
  struct statvfs st {};
  waitFor([&] { return ::statvfs(small.path().c_str(), &st) == 0 && st.f_bfree * 10 > st.f_blocks * 9; });
  auto info = provisioner_->provision("c", dockerImage(registry_.hostPort() + "/test/large"));
  AWAIT_READY(info);
  EXPECT_EQ(3u * 1024 * 1024, fs::file_size(fs::path(info->rootfs) / "large"));
}

// The index of the Docker store, rewritten: each listed key's last use (and
// pull) set back, as if used that many seconds ago. What a store pulled days
// ago looks like.
void ageImages(const fs::path& workDir, const std::map<std::string, std::int64_t>& secondsAgo) {
  const fs::path file = workDir / "store/docker/images";
  messages::StoredImages index;
  ASSERT_TRUE(index.ParseFromString(testing::readFile(file)));
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  for (auto& image : *index.mutable_images()) {
    auto ago = secondsAgo.find(image.key());
    if (ago == secondsAgo.end()) continue;
    image.set_last_used_at(now - ago->second);
    image.set_pulled_at(now - ago->second - 3600);
  }
  std::string bytes;
  index.SerializeToString(&bytes);
  testing::writeFile(file, bytes);
}

std::string dockerKey(const std::string& name) { return "docker://docker.io/library/" + name + ":latest"; }

// The kubelet's policy on a real (tmpfs) file system of 16 MiB: four images
// of 3 MiB each fill it to 75 %, past the high threshold (60 %). GC removes
// the least recently used first (c, then b) until at most 40 % is used; it
// keeps the image a running container uses although it is the least
// recently used (a), and the excluded one (d); the container's rootfs still
// reads its layer. A second check finds nothing to do.
TEST_F(ProvisionerTest, ImageGcPastTheHighThresholdRemovesTheLeastRecentlyUsedDownToTheLow) {
  provisioner_.reset();
  runtime_.clock().pause();
  SmallWorkDir small(*this, "16m");
  ASSERT_TRUE(small.mounted());
  for (const char* name : {"a", "b", "c", "d"}) {
    publish(std::string("library/") + name, "latest", {{TarEntry::file(name, randomBytes(3 * 1024 * 1024))}});
  }
  start();
  for (const char* name : {"a", "b", "c", "d"}) AWAIT_READY(provisioner_->pullImage(dockerImage(name)));
  auto running = provisioner_->provision("c1", dockerImage("a"));
  AWAIT_READY(running);
  provisioner_.reset();
  // Least recently used first: a (in use), d (excluded), c, b.
  ageImages(workDir_, {{dockerKey("a"), 4000}, {dockerKey("b"), 1000}, {dockerKey("c"), 2000}, {dockerKey("d"), 3000}});

  ImageGcConfig gc;
  gc.highThresholdPercent = 60;
  gc.lowThresholdPercent = 40;
  gc.minimumAge = std::chrono::seconds(0);
  gc.imageDiskWatchInterval = std::chrono::hours(1);
  gc.excludedImages = {dockerImage("d")};
  start({"c1"}, backend::kOverlay, gc);
  auto usage = provisioner_->imageUsage();
  AWAIT_READY(usage);
  ASSERT_EQ(4u, usage->size());
  for (const auto& image : usage.get()) {
    EXPECT_GE(image.bytes, 3 * 1024 * 1024) << image.image.key();
    EXPECT_LT(image.bytes, 3 * 1024 * 1024 + 64 * 1024) << image.image.key();
    EXPECT_EQ(image.bytes, image.ownBytes) << image.image.key() << ": shares nothing";
    EXPECT_EQ(image.image.key() == dockerKey("a"), image.inUse) << image.image.key();
  }
  struct statvfs st {};
  ASSERT_EQ(0, ::statvfs(small.path().c_str(), &st));
  ASSERT_GT((st.f_blocks - st.f_bavail) * 100, st.f_blocks * 60) << "the images fill it past the high threshold";

  auto removed = provisioner_->collectImages();
  AWAIT_READY(removed);
  EXPECT_EQ((std::vector<std::string>{dockerKey("c"), dockerKey("b")}), removed.get());
  auto images = provisioner_->images();
  AWAIT_READY(images);
  std::set<std::string> left;
  for (const auto& image : images.get()) left.insert(image.key());
  EXPECT_EQ((std::set<std::string>{dockerKey("a"), dockerKey("d")}), left);
  auto containers = provisioner_->containers();
  AWAIT_READY(containers);
  ASSERT_EQ(1u, containers->size());
  const auto& rootfs = containers->front().rootfses.front();
  for (const auto& layer : rootfs.layers()) EXPECT_TRUE(fs::exists(layer)) << "a running container lost " << layer;
  EXPECT_EQ(3u * 1024 * 1024, fs::file_size(fs::path(running->rootfs) / "a"));
  // The removed layers leave gc/ in the background.
  waitFor([&] {
    return ::statvfs(small.path().c_str(), &st) == 0 && (st.f_blocks - st.f_bavail) * 100 <= st.f_blocks * 40;
  });
  EXPECT_LE((st.f_blocks - st.f_bavail) * 100, st.f_blocks * 40) << "down to the low threshold";

  auto again = provisioner_->collectImages();
  AWAIT_READY(again);
  EXPECT_EQ(std::vector<std::string>{}, again.get()) << "under the high threshold: nothing to do";
  auto metrics = provisioner_->metrics();
  AWAIT_READY(metrics);
  EXPECT_EQ(2.0, metrics->at("provisioner/image_gc_removed_images"));
  EXPECT_EQ(2.0, metrics->at("provisioner/image_gc_checks"));
}

// The store size cap, with images that share a layer: each image's size
// counts the shared base once, its own bytes do not count it; past the cap
// the least recently used image goes and the base it shares stays. Images
// pulled less than the minimum age ago stay whatever the cap says. A
// layer's size is measured the first time it is asked for, not during the
// pull, and written beside it; a store from before (no such file) is
// measured the same way, and a write a crash cut short is cleaned up.
TEST_F(ProvisionerTest, ImageGcKeepsTheStoreUnderItsCapCountingSharedLayersOnce) {
  const auto base = TarEntry::file("base", randomBytes(1024 * 1024));
  publish("library/x", "latest", {{base}, {TarEntry::file("x", randomBytes(1024 * 1024))}});
  publish("library/y", "latest", {{base}, {TarEntry::file("y", randomBytes(1024 * 1024))}});
  AWAIT_READY(provisioner_->pullImage(dockerImage("x")));
  AWAIT_READY(provisioner_->pullImage(dockerImage("y")));
  for (const auto& layer : fs::directory_iterator(workDir_ / "store/docker/layers")) {
    EXPECT_FALSE(fs::exists(layer.path() / "usage")) << "the pull measured " << layer.path();
  }
  auto sizes = [&] {
    std::map<std::string, std::pair<std::int64_t, std::int64_t>> bytes;
    auto usage = provisioner_->imageUsage();
    EXPECT_TRUE(usage.waitFor(testing::kDefaultAwait) && usage.isReady());
    if (usage.isReady()) {
      for (const auto& image : usage.get()) bytes[image.image.key()] = {image.bytes, image.ownBytes};
    }
    return bytes;
  };
  const auto before = sizes();
  ASSERT_EQ(1u, before.count(dockerKey("x")));
  const auto [xBytes, xOwn] = before.at(dockerKey("x"));
  EXPECT_GE(xOwn, 1024 * 1024);
  EXPECT_LT(xOwn, 1024 * 1024 + 64 * 1024);
  EXPECT_GE(xBytes - xOwn, 1024 * 1024) << "the shared base, counted once in its size";
  EXPECT_LT(xBytes - xOwn, 1024 * 1024 + 64 * 1024);

  // The former layout, or a store never asked: no usage file beside a layer.
  provisioner_.reset();
  std::vector<fs::path> usageFiles;
  for (const auto& layer : fs::directory_iterator(workDir_ / "store/docker/layers")) {
    ASSERT_TRUE(fs::exists(layer.path() / "usage")) << layer.path();
    usageFiles.push_back(layer.path() / "usage");
    fs::remove(layer.path() / "usage");
    testing::writeFile(layer.path() / "usage.tmp-cut", "12");  // a write a crash cut short
  }
  ageImages(workDir_, {{dockerKey("x"), 600}, {dockerKey("y"), 300}});
  ImageGcConfig gc;
  gc.maxStoreBytes = static_cast<std::uint64_t>(xBytes + xOwn / 2);  // x and y do not fit; either does
  gc.minimumAge = std::chrono::hours(2);
  gc.imageDiskWatchInterval = std::chrono::hours(1);
  auto plenty = [](const std::string&) -> Try<DiskSpace> { return DiskSpace{100ull << 30, 90ull << 30}; };
  start({}, backend::kOverlay, gc, plenty);
  EXPECT_EQ(before, sizes()) << "measured again, the same";
  for (const auto& file : usageFiles) {
    EXPECT_TRUE(fs::exists(file)) << file << " written back";
    EXPECT_FALSE(fs::exists(file.string() + ".tmp-cut")) << "recover removes a cut write";
  }

  auto young = provisioner_->collectImages();
  AWAIT_READY(young);
  EXPECT_EQ(std::vector<std::string>{}, young.get()) << "both pulled within the minimum age: kept past the cap";

  gc.minimumAge = std::chrono::minutes(30);
  start({}, backend::kOverlay, gc, plenty);
  auto removed = provisioner_->collectImages();
  AWAIT_READY(removed);
  EXPECT_EQ(std::vector<std::string>{dockerKey("x")}, removed.get());
  EXPECT_EQ(1u, imageCount());
  auto info = provisioner_->provision("c1", dockerImage("y"));
  AWAIT_READY(info);
  EXPECT_TRUE(fs::exists(fs::path(info->rootfs) / "base")) << "the shared base stayed";
}

// The thresholds read the file system of the store (the kubelet's image
// file system), not the work dir's: a full work dir with room in the store
// removes nothing; a store past the high threshold removes what it may,
// and says it was not enough when that is so.
TEST_F(ProvisionerTest, TheThresholdsReadTheStoresFileSystem) {
  AWAIT_READY(provisioner_->pullImage(dockerImage("alpine")));
  AWAIT_READY(provisioner_->pullImage(dockerImage("debian")));
  auto storeUsed = std::make_shared<std::atomic<std::uint64_t>>(10);  // percent
  const std::string storeDir = (workDir_ / "store/docker").string();
  ImageGcConfig gc;
  gc.highThresholdPercent = 80;
  gc.lowThresholdPercent = 50;
  gc.minimumAge = std::chrono::seconds(0);
  gc.imageDiskWatchInterval = std::chrono::hours(1);
  start({}, backend::kOverlay, gc, [storeUsed, storeDir](const std::string& path) -> Try<DiskSpace> {
    const std::uint64_t total = 1ull << 30;
    if (path.rfind(storeDir, 0) == 0) return DiskSpace{total, total / 100 * (100 - storeUsed->load()), 1};
    return DiskSpace{total, total / 100, 2};  // the work dir's file system: 99 % used
  });
  auto kept = provisioner_->collectImages();
  AWAIT_READY(kept);
  EXPECT_EQ(std::vector<std::string>{}, kept.get()) << "the store's file system has room";
  EXPECT_EQ(2u, imageCount());
  storeUsed->store(90);
  auto removed = provisioner_->collectImages();
  AWAIT_READY(removed);
  EXPECT_EQ((std::vector<std::string>{dockerKey("alpine"), dockerKey("debian")}), removed.get())
      << "past the high threshold: all it may remove, least recently used (then by key) first";
  EXPECT_EQ(0u, imageCount());
}

// A check past the high threshold with nothing it may remove (the images
// are young) takes no lock: it ends while a provision holds the read lock,
// and removes nothing.
TEST_F(ProvisionerTest, ACheckWithNothingToRemoveDoesNotWaitForProvisions) {
  AWAIT_READY(provisioner_->pullImage(dockerImage("alpine")));
  auto held = std::make_shared<GatedBackend>(runtime_, backend::kOverlay);
  ImageGcConfig gc;
  gc.highThresholdPercent = 80;
  gc.lowThresholdPercent = 50;
  gc.minimumAge = std::chrono::hours(1);
  gc.imageDiskWatchInterval = std::chrono::hours(1);
  start(
      {}, backend::kOverlay, gc,
      [](const std::string&) -> Try<DiskSpace> {
        return DiskSpace{1000, 10, 1};
      },
      held);
  auto provisioning = provisioner_->provision("c1", dockerImage("alpine"));  // the held backend is the default
  AWAIT_READY(held->called());
  auto checked = provisioner_->collectImages();
  AWAIT_READY(checked);
  EXPECT_EQ(std::vector<std::string>{}, checked.get());
  EXPECT_FALSE(provisioning.isReady()) << "the provision still holds the read lock";
  held->releaseOne();
  AWAIT_READY(provisioning);
  EXPECT_EQ(1u, imageCount());
}

// An index entry written before last_used_at (the previous layout) reads 0
// there: its pulled_at stands in, so it is not taken for the least
// recently used image of all.
TEST_F(ProvisionerTest, AnEntryFromBeforeLastUseIsRankedByItsPull) {
  AWAIT_READY(provisioner_->pullImage(dockerImage("alpine")));
  AWAIT_READY(provisioner_->pullImage(dockerImage("debian")));
  provisioner_.reset();
  const fs::path file = workDir_ / "store/docker/images";
  messages::StoredImages index;
  ASSERT_TRUE(index.ParseFromString(testing::readFile(file)));
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  for (auto& image : *index.mutable_images()) {
    if (image.key() == dockerKey("alpine")) {  // as the previous layout wrote it
      image.clear_last_used_at();
      image.set_pulled_at(now - 4000);
    } else {
      image.set_last_used_at(now - 5000);
      image.set_pulled_at(now - 9000);
    }
  }
  std::string bytes;
  index.SerializeToString(&bytes);
  testing::writeFile(file, bytes);
  ImageGcConfig gc;
  gc.maxStoreBytes = 1;
  gc.minimumAge = std::chrono::seconds(0);
  gc.imageDiskWatchInterval = std::chrono::hours(1);
  start({}, backend::kOverlay, gc, [](const std::string&) -> Try<DiskSpace> {
    return DiskSpace{1ull << 40, 1ull << 39, 1};
  });
  auto removed = provisioner_->collectImages();
  AWAIT_READY(removed);
  EXPECT_EQ((std::vector<std::string>{dockerKey("debian"), dockerKey("alpine")}), removed.get())
      << "debian, used 5000 s ago, before alpine, pulled 4000 s ago";
}

// quiesce() is READY only once the work the calls before it left running
// has ended: the write of the index that a destroy's last use started (a
// destroy does not wait for it) and the sweep of gc/ after a prune. The
// command line exits on it without a teardown.
TEST_F(ProvisionerTest, QuiesceWaitsForTheIndexWriteAndTheSweepLeftRunning) {
  AWAIT_READY(provisioner_->provision("c1", dockerImage("alpine")));
  provisioner_.reset();
  ageImages(workDir_, {{dockerKey("alpine"), 7200}});
  start({"c1"});
  ASSERT_NO_FATAL_FAILURE(
      fixture::expectQuiesceWaitsForTheLastUseWrite(*provisioner_, "c1", workDir_ / "store/docker/images"));

  AWAIT_READY(provisioner_->pruneImages({}));
  AWAIT_READY(provisioner_->quiesce());
  EXPECT_TRUE(fs::is_empty(workDir_ / "store/docker/gc")) << "swept before quiesce() was READY";
  EXPECT_TRUE(fs::is_empty(workDir_ / "store/docker/layers"));
}

// A get that hands out a stored image moves its last use, and so does the
// end of a container made from it (it was in use until then), whether by
// destroy or by recover; in the index too, to the minute.
TEST_F(ProvisionerTest, AProvisionAndADestroyMoveTheImagesLastUse) {
  AWAIT_READY(provisioner_->pullImage(dockerImage("alpine")));
  provisioner_.reset();
  ageImages(workDir_, {{dockerKey("alpine"), 7200}});
  start();
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  auto lastUse = [&] {
    auto images = provisioner_->images();
    EXPECT_TRUE(images.waitFor(testing::kDefaultAwait) && images.isReady());
    return images.isReady() && images->size() == 1 ? images->front().last_used_at() : -1;
  };
  EXPECT_LT(lastUse(), now - 3600);
  AWAIT_READY(provisioner_->provision("c1", dockerImage("alpine")));
  EXPECT_GE(lastUse(), now) << "handed out";

  provisioner_.reset();
  ageImages(workDir_, {{dockerKey("alpine"), 7200}});
  start({"c1"});
  EXPECT_LT(lastUse(), now - 3600) << "recover moves nothing";
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c1"));
  EXPECT_GE(lastUse(), now) << "in use until its container went";
  provisioner_.reset();
  start();
  EXPECT_GE(lastUse(), now) << "written to the index";

  // A container recover destroys (unknown now) counts too.
  AWAIT_READY(provisioner_->provision("c2", dockerImage("alpine")));
  provisioner_.reset();
  ageImages(workDir_, {{dockerKey("alpine"), 7200}});
  start();
  auto containers = provisioner_->containers();
  AWAIT_READY(containers);
  EXPECT_TRUE(containers->empty()) << "recover destroyed c2";
  EXPECT_GE(lastUse(), now) << "in use until recover destroyed its container";
}

// CVE-2021-41091 class: what an image holds (a setuid-root binary, a device
// node anyone may open) is out of other users' reach, in the store and in
// copy and overlay rootfses, even under a work dir others may enter.
TEST_F(ProvisionerTest, ImageContentIsOutOfOtherUsersReach) {
  for (const fs::path& dir : {sandbox(), workDir_}) {
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms(0755));
  }
  TarEntry su = TarEntry::file("bin/su", testing::readFile("/usr/bin/true"), 04755);
  TarEntry device;
  device.path = "dev/open";
  device.type = TarEntry::Type::CharDevice;
  device.major = 1;  // /dev/null's numbers: opening it proves it was reachable
  device.minor = 3;
  device.mode = 0666;
  publish("test/setuid", "latest", {{TarEntry::directory("bin"), TarEntry::directory("dev"), su, device}});
  const messages::Image image = dockerImage(registry_.hostPort() + "/test/setuid");
  start({}, backend::kCopy);
  auto copied = provisioner_->provision("c1", image);
  AWAIT_READY(copied);
  start({"c1"}, backend::kOverlay);
  auto overlaid = provisioner_->provision("c2", image);
  AWAIT_READY(overlaid);
  std::vector<fs::path> roots = {copied->rootfs, overlaid->rootfs};
  for (const auto& layer : fs::directory_iterator(workDir_ / "store/docker/layers")) {
    roots.push_back(layer.path() / "rootfs");
  }
  ASSERT_EQ(3u, roots.size());
  const std::vector<std::string> nobody = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
  auto as = [](std::vector<std::string> user, std::vector<std::string> argv) {
    user.insert(user.end(), argv.begin(), argv.end());
    return testing::runCommand(user);
  };
  for (const auto& root : roots) {
    const std::string su = (root / "bin/su").string(), dev = (root / "dev/open").string();
    // Root reaches both: the checks below can fail.
    EXPECT_EQ(0, as({}, {su}).status) << su;
    EXPECT_EQ(0, as({}, {"head", "-c1", dev}).status) << dev;
    // Through a shell: setpriv itself resolves and execs its program before
    // it drops root's capabilities.
    for (const auto& argv :
         std::vector<std::vector<std::string>>{{"sh", "-c", "exec \"$0\"", su}, {"head", "-c1", dev}}) {
      const auto run = as(nobody, argv);
      EXPECT_NE(0, run.status) << argv.back() << " is reachable by nobody";
      EXPECT_NE(std::string::npos, run.output.find("Permission denied")) << run.output;
    }
  }
  auto mode = [](const fs::path& path) { return static_cast<unsigned>(fs::status(path).permissions()); };
  EXPECT_EQ(0700u, mode(workDir_ / "store/docker"));
  EXPECT_EQ(0700u, mode(workDir_ / "provisioner"));
  // Wider ones (an older layout, a hand's chmod) are narrowed at start.
  fs::permissions(workDir_ / "store/docker", fs::perms(0755));
  fs::permissions(workDir_ / "provisioner", fs::perms(0750));
  start({"c1", "c2"}, backend::kOverlay);
  EXPECT_EQ(0700u, mode(workDir_ / "store/docker"));
  EXPECT_EQ(0700u, mode(workDir_ / "provisioner"));
  const auto run = as(nobody, {"sh", "-c", "exec \"$0\"", (roots[0] / "bin/su").string()});
  EXPECT_NE(std::string::npos, run.output.find("Permission denied")) << run.output;
}

TEST_F(ProvisionerTest, ConcurrentProvisionDestroyAndPruneDoNotDeadlock) {
  std::vector<actors::Future<ProvisionInfo>> provisions;
  std::vector<actors::Future<bool>> destroys;
  std::vector<actors::Future<Nothing>> prunes;
  for (int i = 0; i < 20; ++i) {
    const std::string id = "p" + std::to_string(i);
    provisions.push_back(provisioner_->provision(id, dockerImage(i % 2 ? "alpine" : "debian")));
    provisions.push_back(provisioner_->provision(id + "/child", dockerImage("alpine")));
    if (i % 3 == 0) prunes.push_back(provisioner_->pruneImages({}));
    // A nested destroy with a prune queued behind it: Mesos's re-entrancy deadlock.
    destroys.push_back(provisioner_->destroy(id));
    prunes.push_back(provisioner_->pruneImages({dockerImage("alpine")}));
  }
  // Each provision either made its rootfs or lost the race with its
  // container's destroy (Unavailable); none hangs.
  for (auto& f : provisions) {
    ASSERT_TRUE(f.waitFor(std::chrono::seconds(30))) << "a provision hangs";
    EXPECT_TRUE(f.isReady() || (f.isFailed() && f.failure().kind == ErrorKind::Unavailable))
        << (f.isFailed() ? f.failure().message : "discarded");
  }
  for (auto& f : destroys) AWAIT_EXPECT_READY(f);
  for (auto& f : prunes) AWAIT_EXPECT_READY(f);
  for (auto& f : destroys) EXPECT_TRUE(f.isReady() && f.get());
  AWAIT_ASSERT_EQ(0u, provisioner_->containers().then([](const std::vector<ContainerInfo>& v) { return v.size(); }));
  EXPECT_FALSE(fs::exists(containerDir("p0")));
}

TEST_F(ProvisionerTest, ASecondProvisionerOnTheWorkDirIsRefusedNamingTheHolder) {
  Provisioner::Parts parts = fixture::copyOnlyParts(runtime_, workDir_);
  // flock locks belong to an open file description: a second open, even in
  // this process, conflicts as another process's would.
  auto second = Provisioner::create(std::move(parts), runtime_);
  ASSERT_TRUE(second.isError());
  EXPECT_EQ(ErrorKind::Unavailable, second.error().kind);
  EXPECT_NE(std::string::npos, second.error().message.find("pid " + std::to_string(::getpid())))
      << second.error().message;
}

// The lock file holds the holder's pid alone, whatever a longer one left.
TEST_F(ProvisionerTest, TheLockFileHoldsExactlyTheHoldersPid) {
  provisioner_.reset();
  const fs::path lock = workDir_ / "lock";
  ASSERT_TRUE(fs::exists(lock));
  { std::ofstream(lock) << "123456789012\nleft over\n"; }
  auto fd = lockWorkDir(workDir_.string());
  ASSERT_TRUE(fd.isSome()) << fd.error().message;
  EXPECT_EQ(std::to_string(::getpid()) + "\n", testing::readFile(lock.string()));
  ::close(*fd);
}

TEST(ProvisionerParseTest, ImagesIdsAndGcConfig) {
  auto docker = parseImage("docker://busybox:1.36");
  ASSERT_TRUE(docker.isSome());
  EXPECT_EQ(messages::Image::DOCKER, docker->type());
  EXPECT_EQ("1.36", docker->reference().tag());
  EXPECT_EQ(messages::Image::DOCKER, parseImage("registry:5000/a/b")->type());
  auto oci = parseImage("oci:/tmp/lay:out:v1");
  ASSERT_TRUE(oci.isSome());
  EXPECT_EQ("/tmp/lay:out", oci->path());
  EXPECT_EQ("v1", oci->layout_tag());
  EXPECT_EQ("", parseImage("oci:/tmp/x/y")->layout_tag());
  EXPECT_EQ("/tmp/a.tar", parseImage("docker-archive:/tmp/a.tar")->path());
  auto appc = parseImage("appc:example.com/app,version=1,os=linux");
  ASSERT_TRUE(appc.isSome());
  EXPECT_EQ("example.com/app", appc->appc().name());
  EXPECT_EQ("1", appc->appc().labels().at("version"));
  EXPECT_TRUE(parseImage("appc:name,bad").isError());
  EXPECT_TRUE(parseImage("UPPER/case").isError());
  EXPECT_TRUE(validateContainerId("a/b-c_d.e").isSome());
  for (const char* bad : {"", "a//b", "../x", "a/..", "a b", "/a"})
    EXPECT_TRUE(validateContainerId(bad).isError()) << bad;
  auto gc = parseImageGcConfig(
      R"({"image_disk_headroom": 0.25, "image_disk_watch_interval": {"nanoseconds": 5000000000},
          "excluded_images": ["busybox", {"type": "DOCKER", "docker": {"name": "alpine"}}]})");
  ASSERT_TRUE(gc.isSome()) << gc.error().message;
  EXPECT_EQ(0.25, gc->imageDiskHeadroom);
  EXPECT_EQ(std::chrono::seconds(5), gc->imageDiskWatchInterval);
  EXPECT_EQ(2u, gc->excludedImages.size());
  auto badGc = parseImageGcConfig(R"({"image_disk_headroom": 2})");
  ASSERT_TRUE(badGc.isError());
  EXPECT_NE(std::string::npos, badGc.error().message.find("image_disk_headroom"));
  auto kubelet = parseImageGcConfig(
      R"({"image_gc_high_threshold_percent": 90, "image_store_max_bytes": 1000,
          "image_minimum_age": {"nanoseconds": 60000000000}})");
  ASSERT_TRUE(kubelet.isSome()) << kubelet.error().message;
  EXPECT_TRUE(kubelet->leastRecentlyUsed());
  EXPECT_EQ(90, kubelet->highThresholdPercent);
  EXPECT_EQ(80, kubelet->lowThresholdPercent) << "the kubelet's default";
  EXPECT_EQ(1000u, kubelet->maxStoreBytes);
  EXPECT_EQ(std::chrono::minutes(1), kubelet->minimumAge);
  auto lowOnly = parseImageGcConfig(R"({"image_gc_low_threshold_percent": 50})");
  ASSERT_TRUE(lowOnly.isSome()) << lowOnly.error().message;
  EXPECT_EQ(85, lowOnly->highThresholdPercent);
  auto capOnly = parseImageGcConfig(R"({"image_store_max_bytes": 5})");
  ASSERT_TRUE(capOnly.isSome()) << capOnly.error().message;
  EXPECT_EQ(0, capOnly->highThresholdPercent) << "no threshold: the cap alone";
  EXPECT_EQ(std::chrono::minutes(2), capOnly->minimumAge);
  EXPECT_FALSE(parseImageGcConfig("{}")->leastRecentlyUsed()) << "Mesos's policy by default";
  for (const auto& [json, names] : std::vector<std::pair<std::string, std::string>>{
           {R"({"image_gc_high_threshold_percent": 70, "image_gc_low_threshold_percent": 75})",
            "image_gc_low_threshold_percent"},
           {R"({"image_gc_high_threshold_percent": 101})", "image_gc_high_threshold_percent"},
           {R"({"image_gc_high_threshold_percent": "85"})", "image_gc_high_threshold_percent"},
           {R"({"image_store_max_bytes": 0})", "image_store_max_bytes"},
           {R"({"image_store_max_bytes": -5})", "image_store_max_bytes"},
           {R"({"image_store_max_bytes": 18446744073709551615})", "image_store_max_bytes"},
           {R"({"image_store_max_bytes": 10, "image_minimum_age": 5})", "image_minimum_age"},
           {R"({"image_disk_headroom": 0.1, "image_gc_high_threshold_percent": 85})", "two policies"}}) {
    auto bad = parseImageGcConfig(json);
    ASSERT_TRUE(bad.isError()) << json;
    EXPECT_NE(std::string::npos, bad.error().message.find(names)) << bad.error().message;
  }
}

}  // namespace
}  // namespace prov::provisioner
