// Cases particular to one backend, and the helpers behind them.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "backend/backend.hpp"
#include "backend/backends.hpp"
#include "backend/mount.hpp"
#include "testkit/files.hpp"
#include "tests/support/await.hpp"
#include "tests/support/faulty_disk.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::backend {
namespace {

namespace fs = std::filesystem;
using prov::testing::readFile;
using prov::testing::writeFile;

// The overlay's options at `rootfs` in /proc/self/mountinfo ("" if none).
std::string overlayOptions(const std::string& rootfs) {
  std::istringstream in(readFile("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devices, root, target;
    fields >> id >> parent >> devices >> root >> target;
    if (target != rootfs) continue;
    const auto dash = line.find(" - ");
    return dash == std::string::npos ? "" : line.substr(dash + 3);
  }
  return "";
}

class BackendTest : public prov::testing::TemporaryDirectoryTest {
 protected:
  void TearDown() override {
    auto leftovers = prov::testing::mountsUnder(sandbox());
    EXPECT_TRUE(leftovers.empty()) << "mount left behind: " << leftovers.front();
    for (auto it = leftovers.rbegin(); it != leftovers.rend(); ++it) (void)mount::unmountLazily(*it);
    TemporaryDirectoryTest::TearDown();
  }

  std::unique_ptr<Backend> make(const std::string& name, BackendOptions options = {}) {
    auto created = createBackend(runtime_, name, options);
    EXPECT_TRUE(created.isSome()) << created.error().message;
    return created.isSome() ? std::move(*created) : nullptr;
  }

  std::string path(const std::string& relative) { return (sandbox() / relative).string(); }

  // `layers` provisioned by `overlay` at rootfses/abc; the mount's options
  // there in `*options` (overlayOptions).
  void provisionAbc(Backend& overlay, const std::vector<std::string>& layers, std::string* options) {
    prov::testing::makeDirectory(path("rootfses"));
    AWAIT_READY(overlay.provision(layers, path("rootfses/abc"), path("backend")));
    *options = overlayOptions(path("rootfses/abc"));
  }

  // `rootfs` (under rootfses/) provisioned over one layer, with a file the
  // container wrote (in the scratch's upperdir), "written", and `more`
  // files beside it (a scratch too big for a destroy to remove beside its
  // unmount, with kScratchRemovedInPlace or more).
  void provisionWritten(Backend& backend, const std::string& rootfs, std::size_t more = 0) {
    writeFile(path("layer/file"), "lower");
    prov::testing::makeDirectory(path("rootfses"));
    AWAIT_READY(backend.provision({path("layer")}, rootfs, path("backend")));
    writeFile(rootfs + "/written", "by the container");
    for (std::size_t i = 0; i < more; ++i) writeFile(rootfs + "/more-" + std::to_string(i), "");
  }

  actors::Runtime runtime_;
};

TEST_F(BackendTest, BindIsReadOnly) {
  // Mesos BindBackend.
  auto bind = make(kBind);
  ASSERT_TRUE(bind);
  prov::testing::makeDirectory(path("source/tmp"));
  AWAIT_READY(bind->provision({path("source")}, path("target"), path("backend")));
  EXPECT_TRUE(fs::is_directory(path("target/tmp")));
  struct stat st;
  ASSERT_EQ(0, ::stat(path("target/tmp").c_str(), &st));
  EXPECT_TRUE(st.st_mode & S_IWUSR);  // the mode allows it ...
  int fd = ::open(path("target/tmp/test").c_str(), O_WRONLY | O_CREAT, 0644);
  EXPECT_EQ(-1, fd);  // ... the read-only mount does not
  EXPECT_EQ(EROFS, errno);
  EXPECT_FALSE(fs::exists(path("source/tmp/test")));
  AWAIT_EXPECT_EQ(true, bind->destroy(path("target"), path("backend")));
  EXPECT_FALSE(fs::exists(path("target")));
}

TEST_F(BackendTest, BindIsReadOnlyRecursively) {
  auto bind = make(kBind);
  ASSERT_TRUE(bind);
  prov::testing::makeDirectory(path("source/sub"));
  prov::testing::makeDirectory(path("elsewhere"));
  ASSERT_EQ(0, ::mount(path("elsewhere").c_str(), path("source/sub").c_str(), nullptr, MS_BIND, nullptr))
      << std::strerror(errno);
  AWAIT_READY(bind->provision({path("source")}, path("target"), path("backend")));
  int fd = ::open(path("target/sub/file").c_str(), O_WRONLY | O_CREAT, 0644);
  EXPECT_EQ(-1, fd);
  EXPECT_EQ(EROFS, errno);
  AWAIT_EXPECT_EQ(true, bind->destroy(path("target"), path("backend")));
  ASSERT_EQ(0, ::umount2(path("source/sub").c_str(), MNT_DETACH));
}

TEST_F(BackendTest, BindRejectsMoreThanOneLayer) {
  auto bind = make(kBind);
  ASSERT_TRUE(bind);
  prov::testing::makeDirectory(path("a"));
  prov::testing::makeDirectory(path("b"));
  auto f = bind->provision({path("a"), path("b")}, path("target"), path("backend"));
  AWAIT_EXPECT_ERROR(actors::ErrorKind::InvalidArgument, f);
  EXPECT_NE(std::string::npos, f.failure().message.find("exactly one layer")) << f.failure().message;
  EXPECT_FALSE(fs::exists(path("target")));
}

TEST_F(BackendTest, OverlayReportsItsScratchDirsAndWritesGoThere) {
  auto overlay = make(kOverlay);
  ASSERT_TRUE(overlay);
  writeFile(path("layer/file"), "lower");
  prov::testing::makeDirectory(path("rootfses"));
  auto info = overlay->provision({path("layer")}, path("rootfses/abc"), path("backend"));
  AWAIT_READY(info);
  const std::string upper = path("backend/scratch/abc/upperdir");
  const std::string work = path("backend/scratch/abc/workdir");
  EXPECT_EQ((std::vector<std::string>{upper, work}), info.get().ephemeralVolumes);
  writeFile(path("rootfses/abc/file"), "changed");
  EXPECT_EQ("changed", readFile(upper + "/file"));
  EXPECT_EQ("lower", readFile(path("layer/file")));
  AWAIT_EXPECT_EQ(true, overlay->destroy(path("rootfses/abc"), path("backend")));
  EXPECT_FALSE(fs::exists(path("backend/scratch/abc")));
}

// A scratch left at the rootfs's name (a provision that crashed) is not
// the new rootfs's: what it held is gone, and the rootfs shows the layer.
TEST_F(BackendTest, OverlayStartsFromAFreshScratchWhereACrashLeftOne) {
  for (const bool viewed : {false, true}) {
    SCOPED_TRACE(viewed ? "through the view" : "by real paths");
    BackendOptions options;
    if (viewed) options.overlayViewRoot = sandbox().string();
    auto overlay = make(kOverlay, options);
    ASSERT_TRUE(overlay);
    writeFile(path("layer/file"), "lower");
    writeFile(path("backend/scratch/abc/upperdir/file"), "left by a crash");
    writeFile(path("backend/scratch/abc/upperdir/extra"), "left by a crash");
    writeFile(path("backend/scratch/abc/workdir/work/junk"), "left by a crash");
    prov::testing::makeDirectory(path("rootfses"));
    auto info = overlay->provision({path("layer")}, path("rootfses/abc"), path("backend"));
    AWAIT_READY(info);
    EXPECT_EQ("lower", readFile(path("rootfses/abc/file")));
    EXPECT_FALSE(fs::exists(path("rootfses/abc/extra")));
    EXPECT_FALSE(fs::exists(path("backend/scratch/abc/upperdir/extra")));
    AWAIT_EXPECT_EQ(true, overlay->destroy(path("rootfses/abc"), path("backend")));
    EXPECT_FALSE(fs::exists(path("backend/scratch/abc")));
    EXPECT_TRUE(prov::testing::mountsUnder(sandbox()).empty());
  }
}

// A rootfs named with a trailing slash gets its own scratch, not the
// whole scratch directory: another rootfs's stays.
TEST_F(BackendTest, OverlayScratchOfARootfsNamedWithASlashIsItsOwn) {
  auto overlay = make(kOverlay);
  ASSERT_TRUE(overlay);
  writeFile(path("layer/file"), "lower");
  prov::testing::makeDirectory(path("rootfses"));
  AWAIT_READY(overlay->provision({path("layer")}, path("rootfses/one"), path("backend")));
  writeFile(path("rootfses/one/written"), "by one");
  AWAIT_READY(overlay->provision({path("layer")}, path("rootfses/two/"), path("backend")));
  EXPECT_TRUE(fs::is_directory(path("backend/scratch/two/upperdir")));
  EXPECT_EQ("by one", readFile(path("backend/scratch/one/upperdir/written")));
  EXPECT_EQ("by one", readFile(path("rootfses/one/written")));
  AWAIT_EXPECT_EQ(true, overlay->destroy(path("rootfses/two/"), path("backend")));
  AWAIT_EXPECT_EQ(true, overlay->destroy(path("rootfses/one"), path("backend")));
  EXPECT_FALSE(fs::exists(path("backend/scratch/one")));
  EXPECT_FALSE(fs::exists(path("backend/scratch/two")));

  // A path that ends in no name is refused, and nothing is made or removed.
  writeFile(path("backend/scratch/kept/upperdir/file"), "another rootfs's");
  for (const std::string& nameless : {path("rootfses/x/.."), path("rootfses/."), std::string("/")}) {
    auto refused = overlay->provision({path("layer")}, nameless, path("backend"));
    AWAIT_EXPECT_ERROR(actors::ErrorKind::InvalidArgument, refused);
    EXPECT_NE(std::string::npos, refused.failure().message.find("does not end in a name")) << refused.failure().message;
    AWAIT_EXPECT_ERROR(actors::ErrorKind::InvalidArgument, overlay->destroy(nameless, path("backend")));
  }
  EXPECT_FALSE(fs::exists(path("rootfses/x")));
  EXPECT_EQ("another rootfs's", readFile(path("backend/scratch/kept/upperdir/file")));
}

// Given the work dir, the overlay names its layers, upperdir and workdir
// through a detached copy of the work dir's mount, which is in no mount
// table (a kernel before 6.15 refuses that: then by their own paths); what
// the container writes still lands in its upperdir.
TEST_F(BackendTest, OverlayNamesItsDirectoriesThroughADetachedViewOfTheWorkDir) {
  const bool taken = prov::testing::overlayTakesDetachedLayers(sandbox());
  auto overlay = make(kOverlay, {.overlayViewRoot = sandbox().string()});
  ASSERT_TRUE(overlay);
  writeFile(path("layer/file"), "lower");
  prov::testing::makeDirectory(path("rootfses"));
  const std::string rootfs = path("rootfses/abc");
  auto info = overlay->provision({path("layer")}, rootfs, path("backend"));
  AWAIT_READY(info);
  const std::string options = overlayOptions(rootfs);
  if (taken) {
    EXPECT_NE(std::string::npos, options.find("=/proc/self/fd/")) << options;
    EXPECT_EQ(std::string::npos, options.find(sandbox().string())) << options;
  }
  EXPECT_EQ(std::vector<std::string>{rootfs}, prov::testing::mountsUnder(sandbox()));
  const std::string upper = path("backend/scratch/abc/upperdir");
  EXPECT_EQ((std::vector<std::string>{upper, path("backend/scratch/abc/workdir")}), info.get().ephemeralVolumes);
  writeFile(rootfs + "/written", "by the container");
  EXPECT_EQ("by the container", readFile(upper + "/written"));
  EXPECT_EQ("lower", readFile(rootfs + "/file"));
  AWAIT_EXPECT_EQ(true, overlay->destroy(rootfs, path("backend")));
}

// The copy holds the work dir's own mount only: a layer on a mount below
// it is named by its own path (even where the same path exists under the
// mount point, which the copy would show), the others through the copy.
TEST_F(BackendTest, ALayerOnAMountBelowTheViewRootIsNamedByItsOwnPath) {
  const bool taken = prov::testing::overlayTakesDetachedLayers(sandbox());
  auto overlay = make(kOverlay, {.overlayViewRoot = sandbox().string()});
  ASSERT_TRUE(overlay);
  prov::testing::makeDirectory(path("other/top"));
  ASSERT_EQ(0, ::mount("tmpfs", path("other").c_str(), "tmpfs", 0, "size=1m")) << std::strerror(errno);
  writeFile(path("other/top/top"), "on its own mount");
  writeFile(path("layer/file"), "lower");
  const std::string rootfs = path("rootfses/abc");
  std::string options;
  provisionAbc(*overlay, {path("other/top"), path("layer")}, &options);
  if (taken && options.find("lowerdir+=") != std::string::npos) {
    EXPECT_NE(std::string::npos, options.find("=" + path("other/top") + ",")) << options;
    EXPECT_EQ(std::string::npos, options.find("=" + path("layer") + ",")) << options;
    EXPECT_NE(std::string::npos, options.find("=/proc/self/fd/")) << options;
  }
  EXPECT_EQ("on its own mount", readFile(rootfs + "/top"));
  EXPECT_EQ("lower", readFile(rootfs + "/file"));
  AWAIT_EXPECT_EQ(true, overlay->destroy(rootfs, path("backend")));
  EXPECT_EQ(0, ::umount2(path("other").c_str(), MNT_DETACH)) << std::strerror(errno);
}

// A directory bound onto itself below the root (here read-only) is the
// same file through the copy, but not the same mount: it is named by its
// own path, and keeps its mount's flags.
TEST_F(BackendTest, ALayerBoundOntoItselfBelowTheViewRootKeepsItsMount) {
  const bool taken = prov::testing::overlayTakesDetachedLayers(sandbox());
  auto overlay = make(kOverlay, {.overlayViewRoot = sandbox().string()});
  ASSERT_TRUE(overlay);
  writeFile(path("bound/file"), "bound");
  writeFile(path("layer/file2"), "lower");
  ASSERT_EQ(0, ::mount(path("bound").c_str(), path("bound").c_str(), nullptr, MS_BIND, nullptr))
      << std::strerror(errno);
  ASSERT_EQ(0, ::mount(nullptr, path("bound").c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr))
      << std::strerror(errno);
  const std::string rootfs = path("rootfses/abc");
  std::string options;
  provisionAbc(*overlay, {path("bound"), path("layer")}, &options);
  if (taken && options.find("lowerdir+=") != std::string::npos) {
    EXPECT_NE(std::string::npos, options.find("=" + path("bound") + ",")) << options;
    EXPECT_EQ(std::string::npos, options.find("=" + path("layer") + ",")) << options;
  }
  EXPECT_EQ("bound", readFile(rootfs + "/file"));
  EXPECT_EQ("lower", readFile(rootfs + "/file2"));
  AWAIT_EXPECT_EQ(true, overlay->destroy(rootfs, path("backend")));
  EXPECT_EQ(0, ::umount2(path("bound").c_str(), MNT_DETACH)) << std::strerror(errno);
}

// Making the file system through the copy fails with EINVAL (how a kernel
// before 6.15 refuses it) and by the real paths works: the copy is set
// aside, for that provision and every one after it.
TEST_F(BackendTest, AMountRefusedThroughTheViewNamesTheRealPathsFromThenOn) {
  auto overlay = make(kOverlay, {.overlayViewRoot = sandbox().string()});
  ASSERT_TRUE(overlay);
  writeFile(path("layer/file"), "lower");
  prov::testing::makeDirectory(path("rootfses"));
  prov::testing::FaultyDisk disk;
  disk.failNth(actors::fs::DiskCall::Mount, 1, EINVAL);  // making the first overlay: through the copy
  for (const char* name : {"first", "second"}) {
    const std::string rootfs = path(std::string("rootfses/") + name);
    AWAIT_READY(overlay->provision({path("layer")}, rootfs, path("backend")));
    const std::string options = overlayOptions(rootfs);
    if (options.find("lowerdir+=") != std::string::npos) {  // the links of older kernels are named by fds anyway
      EXPECT_NE(std::string::npos, options.find("=" + path("layer") + ",")) << name << ": " << options;
      EXPECT_EQ(std::string::npos, options.find("/proc/self/fd/")) << name << ": " << options;
    }
    EXPECT_EQ("lower", readFile(rootfs + "/file")) << name;
    AWAIT_EXPECT_EQ(true, overlay->destroy(rootfs, path("backend")));
  }
  EXPECT_TRUE(disk.failed().has_value());
}

// Any other failure through the copy is the provision's own: reported as
// it is, and the copy kept for the next provision. (A kernel that refuses
// the copy makes its EINVAL first; the real paths then meet the EIO.)
TEST_F(BackendTest, AnotherFailureThroughTheViewIsReportedAndTheViewKept) {
  const bool taken = prov::testing::overlayTakesDetachedLayers(sandbox());
  auto overlay = make(kOverlay, {.overlayViewRoot = sandbox().string()});
  ASSERT_TRUE(overlay);
  writeFile(path("layer/file"), "lower");
  prov::testing::makeDirectory(path("rootfses"));
  {
    prov::testing::FaultyDisk disk;
    disk.failNth(actors::fs::DiskCall::Mount, 2, EIO);  // attaching the first overlay (or its propagation)
    auto failed = overlay->provision({path("layer")}, path("rootfses/first"), path("backend"));
    AWAIT_FAILED(failed);
    EXPECT_NE(std::string::npos, failed.failure().message.find("Input/output error")) << failed.failure().message;
    EXPECT_EQ(2, disk.calls(actors::fs::DiskCall::Mount)) << "tried again";
  }
  EXPECT_FALSE(fs::exists(path("rootfses/first")));
  const std::string rootfs = path("rootfses/second");
  AWAIT_READY(overlay->provision({path("layer")}, rootfs, path("backend")));
  if (taken) {
    EXPECT_NE(std::string::npos, overlayOptions(rootfs).find("=/proc/self/fd/"));
  }
  EXPECT_EQ("lower", readFile(rootfs + "/file"));
  AWAIT_EXPECT_EQ(true, overlay->destroy(rootfs, path("backend")));
}

// Something a runtime task waits at until the test opens it. Shared with
// the task, and opened when the test's scope ends (declared after the
// runtime, so before its shutdown joins the task), whatever the test did.
struct Barrier {
  std::mutex mutex;
  std::condition_variable changed;
  bool reached = false, open = false;
  void reachAndWait() {
    std::unique_lock lock(mutex);
    reached = true;
    changed.notify_all();
    changed.wait(lock, [this] { return open; });
  }
  bool waitReached() {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(15), [this] { return reached; });
  }
  void release() {
    std::lock_guard lock(mutex);
    open = true;
    changed.notify_all();
  }
};
struct OpenAtExit {
  std::shared_ptr<Barrier> barrier;
  ~OpenAtExit() { barrier->release(); }
};

// Polls `condition` (every 2 ms, for at most 15 s): true once it holds.
bool eventually(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// The threads that unmounted and that removed the file "written".
class ThreadsOfDestroy : public prov::testing::FaultyDisk {
 public:
  int before(actors::fs::DiskCall call, const char* path) override {
    std::lock_guard lock(mutex_);
    if (call == actors::fs::DiskCall::Unmount) unmounted = std::this_thread::get_id();
    if (call == actors::fs::DiskCall::Remove && path && std::string(path) == "written") {
      removed = std::this_thread::get_id();
    }
    return FaultyDisk::before(call, path);
  }
  std::thread::id unmounted, removed;

 private:
  std::mutex mutex_;
};

// Takes the one blocking thread of `runtime` until `hold` is released; its
// id in `*thread` (if given).
actors::Future<bool> holdTheBlockingThread(actors::Runtime& runtime, const std::shared_ptr<Barrier>& hold,
                                           std::thread::id* thread = nullptr) {
  auto holder = actors::async(runtime, [hold, thread] {
    if (thread) *thread = std::this_thread::get_id();
    hold->reachAndWait();
    return true;
  });
  EXPECT_TRUE(hold->waitReached());
  return holder;
}

// A destroy unmounts on the runtime's waiting pool, so a blocking pool full
// of other work (extractions) does not hold it up; only the removal of a
// big scratch, which is work, waits for a blocking thread.
TEST_F(BackendTest, AnOverlayIsUnmountedWhileEveryBlockingThreadIsBusy) {
  ThreadsOfDestroy disk;  // outlives the runtime's threads
  actors::Runtime runtime(actors::Runtime::Options{.workerThreads = 1, .blockingThreads = 1});
  auto hold = std::make_shared<Barrier>();
  OpenAtExit openAtExit{hold};
  auto created = createBackend(runtime, kOverlay);
  ASSERT_TRUE(created.isSome()) << created.error().message;
  auto& overlay = **created;
  const std::string rootfs = path("rootfses/abc");
  provisionWritten(overlay, rootfs, kScratchRemovedInPlace);

  std::thread::id blockingThread;  // the pool's one thread, held
  auto holder = holdTheBlockingThread(runtime, hold, &blockingThread);
  auto destroyed = overlay.destroy(rootfs, path("backend"));
  EXPECT_TRUE(eventually([&] { return !fs::exists(rootfs); }));  // unmounted, mount point gone
  EXPECT_TRUE(prov::testing::mountsUnder(sandbox()).empty());
  EXPECT_TRUE(fs::exists(path("backend/scratch/abc/upperdir/written")));  // its removal waits
  EXPECT_TRUE(destroyed.isPending());
  hold->release();
  AWAIT_EXPECT_EQ(true, holder);
  AWAIT_EXPECT_EQ(true, destroyed);
  EXPECT_FALSE(fs::exists(path("backend/scratch/abc")));
  EXPECT_NE(disk.unmounted, disk.removed);  // not beside the unmount: too big
  EXPECT_EQ(blockingThread, disk.removed);  // on the blocking pool
}

// A scratch the container wrote little to goes with the unmount, on the
// waiting pool: the destroy ends while every blocking thread is busy.
TEST_F(BackendTest, ASmallScratchGoesWithTheUnmountWhileEveryBlockingThreadIsBusy) {
  actors::Runtime runtime(actors::Runtime::Options{.workerThreads = 1, .blockingThreads = 1});
  auto hold = std::make_shared<Barrier>();
  OpenAtExit openAtExit{hold};
  auto created = createBackend(runtime, kOverlay);
  ASSERT_TRUE(created.isSome()) << created.error().message;
  auto& overlay = **created;
  const std::string rootfs = path("rootfses/abc");
  provisionWritten(overlay, rootfs, 8);

  auto holder = holdTheBlockingThread(runtime, hold);
  AWAIT_EXPECT_EQ(true, overlay.destroy(rootfs, path("backend")));
  EXPECT_FALSE(fs::exists(rootfs));
  EXPECT_FALSE(fs::exists(path("backend/scratch/abc")));
  EXPECT_TRUE(prov::testing::mountsUnder(sandbox()).empty());
  EXPECT_TRUE(holder.isPending());
  hold->release();
  AWAIT_EXPECT_EQ(true, holder);
}

// An unmount under way when the runtime shuts down: the runtime then
// refuses new work, and the scratch is removed all the same, so a destroy
// that unmounted never leaves the container's writes behind.
class UnmountAtBarrier : public prov::testing::FaultyDisk {
 public:
  explicit UnmountAtBarrier(std::shared_ptr<Barrier> barrier) : barrier_(std::move(barrier)) {}
  int before(actors::fs::DiskCall call, const char* path) override {
    if (call == actors::fs::DiskCall::Unmount) barrier_->reachAndWait();
    return FaultyDisk::before(call, path);
  }

 private:
  std::shared_ptr<Barrier> barrier_;
};

TEST_F(BackendTest, ADestroyUnderWayAtShutdownRemovesItsScratch) {
  auto unmounting = std::make_shared<Barrier>();
  UnmountAtBarrier disk(unmounting);  // outlives the runtime's threads
  actors::Runtime runtime(actors::Runtime::Options{.workerThreads = 1, .blockingThreads = 1});
  OpenAtExit openAtExit{unmounting};
  auto created = createBackend(runtime, kOverlay);
  ASSERT_TRUE(created.isSome()) << created.error().message;
  auto& overlay = **created;
  const std::string rootfs = path("rootfses/abc");
  provisionWritten(overlay, rootfs, kScratchRemovedInPlace);  // removed on the blocking pool

  auto destroyed = overlay.destroy(rootfs, path("backend"));
  ASSERT_TRUE(unmounting->waitReached());
  std::thread shutdown([&runtime] { runtime.shutdown(); });
  EXPECT_TRUE(eventually([&] { return !runtime.accepting(); }));
  unmounting->release();
  shutdown.join();
  ASSERT_TRUE(destroyed.isReady()) << prov::testing::describe(destroyed);
  EXPECT_TRUE(destroyed.get());
  EXPECT_FALSE(fs::exists(rootfs));
  EXPECT_FALSE(fs::exists(path("backend/scratch/abc")));
}

// The super options the kernel shows for the mount at `target`, each
// between commas: ",rw,lowerdir=...,volatile,".
std::string superOptionsAt(const std::string& target) {
  const std::string table = readFile("/proc/self/mountinfo");
  std::istringstream lines(table);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(" " + target + " ") != std::string::npos) return "," + line.substr(line.rfind(' ') + 1) + ",";
  }
  return "";
}

// Shown as "volatile", or "fsync=volatile" by newer kernels.
bool isVolatile(const std::string& options) {
  return options.find(",volatile,") != std::string::npos || options.find(",fsync=volatile,") != std::string::npos;
}

// --overlay_volatile, with the lowerdir+ mount (where the kernel has it)
// and the one Mesos uses: the kernel has the option. After a crash (the
// mount gone, the scratch with the kernel's volatile mark left), destroy
// removes it all (recover calls the same destroy), and the same path is
// provisioned afresh.
TEST_F(BackendTest, AVolatileOverlayIsMountedSoAndAfterACrashAgain) {
  writeFile(path("layer/file"), "lower");
  prov::testing::makeDirectory(path("rootfses"));
  for (bool plus : {true, false}) {
    SCOPED_TRACE(plus ? "lowerdir+" : "symlinks");
    auto overlay = make(kOverlay, {.overlayUseLowerdirPlus = plus, .overlayVolatile = true});
    auto plain = make(kOverlay, {.overlayUseLowerdirPlus = plus});
    ASSERT_TRUE(overlay && plain);
    const std::string rootfs = path("rootfses/v"), other = path("rootfses/p");
    AWAIT_READY(overlay->provision({path("layer")}, rootfs, path("backend")));
    AWAIT_READY(plain->provision({path("layer")}, other, path("backend")));
    EXPECT_TRUE(isVolatile(superOptionsAt(rootfs))) << superOptionsAt(rootfs);
    EXPECT_FALSE(isVolatile(superOptionsAt(other))) << superOptionsAt(other);
    writeFile(rootfs + "/written", "w");
    EXPECT_TRUE(fs::exists(path("backend/scratch/v/workdir/work/incompat/volatile")));
    // A crash: the mount is gone (the host rebooted), the scratch is not.
    ASSERT_EQ(0, ::umount2(rootfs.c_str(), MNT_DETACH));
    AWAIT_READY(overlay->destroy(rootfs, path("backend")));
    EXPECT_FALSE(fs::exists(path("backend/scratch/v")));
    AWAIT_READY(overlay->provision({path("layer")}, rootfs, path("backend")));
    EXPECT_EQ("lower", readFile(rootfs + "/file"));
    EXPECT_FALSE(fs::exists(rootfs + "/written")) << "a fresh writable layer";
    AWAIT_EXPECT_EQ(true, overlay->destroy(rootfs, path("backend")));
    AWAIT_EXPECT_EQ(true, plain->destroy(other, path("backend")));
    EXPECT_FALSE(fs::exists(path("backend/scratch/v")));
  }
}

// Paths holding what mount data uses as separators (',' ':' '=') and
// spaces work with every backend: none is ever written into mount data
// (the overlay without lowerdir+ names its directories by descriptor).
TEST_F(BackendTest, PathsWithMountOptionSeparatorsWorkWithEveryBackend) {
  const std::string odd = "odd ,dir:with=seps";
  writeFile(path(odd + "/l,1/base"), "base");
  writeFile(path(odd + "/l:2=x/top"), "top");
  prov::testing::makeDirectory(path(odd + "/rootfses"));
  for (const char* name : {kCopy, kBind, kOverlay}) {
    SCOPED_TRACE(name);
    auto backend = make(name);
    ASSERT_TRUE(backend);
    const bool stacked = std::string(name) != kBind;
    std::vector<std::string> layers = {path(odd + "/l,1")};
    if (stacked) layers.push_back(path(odd + "/l:2=x"));
    const std::string rootfs = path(odd + "/rootfses/r," + std::string(name));
    const std::string backendDir = path(odd + "/back,end=" + std::string(name));
    AWAIT_READY(backend->provision(layers, rootfs, backendDir));
    EXPECT_EQ("base", readFile(rootfs + "/base"));
    if (stacked) {
      EXPECT_EQ("top", readFile(rootfs + "/top"));
    }
    AWAIT_EXPECT_EQ(true, backend->destroy(rootfs, backendDir));
    EXPECT_FALSE(fs::exists(rootfs));
  }
}

TEST_F(BackendTest, RootfsMountsAreSharedAsMesosMakesThem) {
  prov::testing::makeDirectory(path("layer/etc"));
  prov::testing::makeDirectory(path("rootfses"));
  for (const char* name : {kOverlay, kBind}) {
    auto backend = make(name);
    ASSERT_TRUE(backend);
    const std::string rootfs = path(std::string("rootfses/") + name);
    AWAIT_READY(backend->provision({path("layer")}, rootfs, path("backend")));
    auto table = mount::table();
    ASSERT_TRUE(table.isSome());
    bool found = false;
    for (const auto& m : *table) {
      if (m.target != rootfs) continue;
      found = true;
      EXPECT_NE(std::string::npos, m.propagation.find("shared:")) << name << ": " << m.propagation;
    }
    EXPECT_TRUE(found) << name;
    AWAIT_EXPECT_EQ(true, backend->destroy(rootfs, path("backend")));
  }
}

TEST_F(BackendTest, OverlayRejectsMoreLayersThanTheKernelStacks) {
  auto overlay = make(kOverlay);
  ASSERT_TRUE(overlay);
  std::vector<std::string> layers(501, path("layer"));
  auto f = overlay->provision(layers, path("rootfs"), path("backend"));
  AWAIT_EXPECT_ERROR(actors::ErrorKind::InvalidArgument, f);
  EXPECT_NE(std::string::npos, f.failure().message.find("limit of 500")) << f.failure().message;
}

TEST_F(BackendTest, AufsIsUnsupportedWhereTheKernelLacksIt) {
  auto aufs = createBackend(runtime_, kAufs);
  if (mount::kernelSupports("aufs")) {
    EXPECT_TRUE(aufs.isSome());
  } else {
    ASSERT_TRUE(aufs.isError());
    EXPECT_EQ(actors::ErrorKind::Unsupported, aufs.error().kind);
    EXPECT_NE(std::string::npos, aufs.error().message.find("/proc/filesystems"));
  }
}

TEST(BackendOptionsTest, AufsAndOverlayMountData) {
  EXPECT_EQ("dirs=/s/workdir=rw:/tmp/L/2=ro+wh:/tmp/L/1=ro+wh:/tmp/L/0=ro+wh",
            aufsMountOptions("/s/workdir", "/tmp/L", 3));
  EXPECT_EQ("lowerdir=/tmp/L/1:/tmp/L/0,upperdir=/u,workdir=/w", overlayMountOptions("/tmp/L", 2, "/u", "/w"));
}

TEST(BackendOptionsTest, UnknownBackendIsAnError) {
  actors::Runtime runtime;
  auto b = createBackend(runtime, "zfs");
  ASSERT_TRUE(b.isError());
  EXPECT_EQ(actors::ErrorKind::InvalidArgument, b.error().kind);
}

TEST(DefaultBackendTest, MesosOrder) {
  HostSupport host{.root = true, .overlay = true, .aufs = true, .workDirFsType = 0xef53, .workDirDType = true};
  EXPECT_EQ(kOverlay, chooseBackend(host));
  host.workDirDType = false;  // overlay needs d_type
  EXPECT_EQ(kAufs, chooseBackend(host));
  host.aufs = false;
  EXPECT_EQ(kCopy, chooseBackend(host));
  host = {.root = true, .overlay = true, .aufs = true, .workDirFsType = 0x794c7630, .workDirDType = true};
  EXPECT_EQ(kCopy, chooseBackend(host));  // work dir on overlay
  host.workDirFsType = 0x9123683e;        // btrfs
  EXPECT_EQ(kCopy, chooseBackend(host));
  host = {.root = false, .overlay = true, .aufs = true, .workDirFsType = 0xef53, .workDirDType = true};
  EXPECT_EQ(kCopy, chooseBackend(host));
}

TEST_F(BackendTest, DefaultBackendOnThisMachine) {
  // Root, overlayfs in the kernel, and a sandbox on a d_type file system.
  ASSERT_EQ(0u, ::geteuid());
  ASSERT_TRUE(mount::kernelSupports("overlay"));
  EXPECT_EQ(kOverlay, defaultBackend(path("not/yet/created")));
  auto dtype = mount::supportsDType(sandbox().string());
  ASSERT_TRUE(dtype.isSome());
  EXPECT_TRUE(*dtype);
}

// The d_type answer: from the probe in an empty directory, which goes
// again; from an entry already there otherwise, writing nothing (the
// directory's mtime stays); never from "." and "..". (No file system at
// hand lacks d_type, so only the answer "yes" is seen here.)
TEST_F(BackendTest, DTypeFromAnEntryThereOrFromAProbe) {
  const std::string empty = path("empty");
  ASSERT_EQ(0, ::mkdir(empty.c_str(), 0755));
  auto probed = mount::supportsDType(empty);
  ASSERT_TRUE(probed.isSome()) << probed.error().message;
  EXPECT_TRUE(*probed);
  EXPECT_TRUE(std::filesystem::is_empty(empty));

  const std::string used = path("used");
  ASSERT_EQ(0, ::mkdir(used.c_str(), 0755));
  ASSERT_EQ(0, ::mkdir((used + "/store").c_str(), 0755));
  struct stat before {};
  ASSERT_EQ(0, ::stat(used.c_str(), &before));
  auto seen = mount::supportsDType(used);
  ASSERT_TRUE(seen.isSome()) << seen.error().message;
  EXPECT_TRUE(*seen);
  struct stat after {};
  ASSERT_EQ(0, ::stat(used.c_str(), &after));
  EXPECT_EQ(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
  EXPECT_EQ(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);

  auto missing = mount::supportsDType(path("missing"));
  EXPECT_TRUE(missing.isError());
}

TEST(MountTableTest, ParsesAndUnescapes) {
  auto table = mount::parseTable(
      "22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw\n"
      "95 22 0:50 / /mnt/with\\040space rw master:1 - overlay overlay rw,lowerdir=/a\n");
  ASSERT_TRUE(table.isSome()) << table.error().message;
  ASSERT_EQ(2u, table->size());
  EXPECT_EQ("/mnt/with space", (*table)[1].target);
  EXPECT_EQ("master:1", (*table)[1].propagation);
  EXPECT_EQ("shared:5", (*table)[0].propagation);
  EXPECT_EQ("overlay", (*table)[1].fsType);
  EXPECT_EQ(22, (*table)[1].parent);
  EXPECT_TRUE(mount::parseTable("garbage\n").isError());
}

}  // namespace
}  // namespace prov::backend
