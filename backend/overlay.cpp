// The overlay backend: an overlayfs over the layers (top layer first), with
// a per-rootfs upperdir and workdir under backendDir/scratch/<rootfs name>.
//
// Mount data is limited to one page, which long layer paths exceed at a few
// dozen layers. Kernels from 6.8 take each lower dir as its own `lowerdir+`
// parameter through the new mount API, with no such limit; older ones get
// short symlinks to the layers, as Mesos does (MESOS-6000). overlayfs
// resolves lower dirs when mounting, so the symlinks are removed right after.
//
// Given the work dir (BackendOptions::overlayViewRoot), the layers, upperdir
// and workdir are named through a detached copy of its mount
// (mount::DetachedView), which keeps an overlay mount's cost from growing
// with the rootfses mounted beside it. A kernel that will not mount through
// the copy gets the real paths, from then on.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "actors/async.hpp"
#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include "actors/log.hpp"
#include "actors/process.hpp"
#include "backend/backends.hpp"
#include "backend/mount.hpp"
#include "backend/process_backend.hpp"

namespace prov::backend {

namespace {

constexpr std::size_t kMaxLayers = 500;  // the kernel's OVL_MAX_STACK

// The kernel's own explanation of a failed fsconfig, if it left one.
std::string kernelMessage(int fsFd) {
  char buffer[512];
  ssize_t n = ::read(fsFd, buffer, sizeof(buffer) - 1);
  if (n <= 2) return "";
  buffer[n] = '\0';
  std::string message(buffer + 2);  // "e overlayfs: ..."
  while (!message.empty() && message.back() == '\n') message.pop_back();
  return " (" + message + ")";
}

// The kernel's overlay refused a parameter it does not know (it is not the
// legacy kind): set once, by the first provision to ask.
std::atomic<bool> overlayParamsChecked{false};

// Both ways of mounting set `*createErrno` to the errno of a failure to make
// the file system (fsconfig's create, or mount(2)): where overlayfs refuses a
// layer it cannot clone.
Try<Nothing> mountWithLowerdirPlus(const std::vector<std::string>& layers, const std::string& upper,
                                   const std::string& work, const std::string& rootfs, bool isVolatile,
                                   int* createErrno) {
  int fsFd = ::fsopen("overlay", FSOPEN_CLOEXEC);
  if (fsFd < 0) {
    if (errno == ENOSYS) return Error(ErrorKind::Unsupported, "no new mount API");
    return actors::errnoError(ErrorKind::IO, "Failed to open an overlay file system context", errno);
  }
  auto fail = [&](const std::string& what) -> Error {
    int err = errno;
    std::string detail = kernelMessage(fsFd);
    ::close(fsFd);
    return actors::errnoError(ErrorKind::IO, "Failed to " + what + detail, err);
  };
  // Before 6.5 overlay takes the kernel's legacy parameters, which accept
  // any key (lowerdir+ too) and fail only at create: a key no overlay knows
  // tells them apart. Asked once: the answer holds while the module is
  // loaded, and a mount keeps it loaded.
  if (!overlayParamsChecked.load(std::memory_order_acquire)) {
    if (::fsconfig(fsFd, FSCONFIG_SET_STRING, "x-provisioner-probe", "1", 0) == 0) {
      ::close(fsFd);
      return Error(ErrorKind::Unsupported, "legacy overlay parameters");
    }
    char refused[512];
    while (::read(fsFd, refused, sizeof(refused)) > 0) {
    }  // the probe's "Unknown parameter": not what a later failure should quote
    overlayParamsChecked.store(true, std::memory_order_release);
  }
  for (std::size_t i = layers.size(); i-- > 0;) {
    if (::fsconfig(fsFd, FSCONFIG_SET_STRING, "lowerdir+", layers[i].c_str(), 0) != 0) {
      if (i + 1 == layers.size() && errno == EINVAL) {
        ::close(fsFd);  // a kernel without lowerdir+
        return Error(ErrorKind::Unsupported, "no lowerdir+");
      }
      return fail("add layer '" + layers[i] + "' to the overlay");
    }
  }
  if (::fsconfig(fsFd, FSCONFIG_SET_STRING, "upperdir", upper.c_str(), 0) != 0) {
    return fail("set the overlay upperdir '" + upper + "'");
  }
  if (::fsconfig(fsFd, FSCONFIG_SET_STRING, "workdir", work.c_str(), 0) != 0) {
    return fail("set the overlay workdir '" + work + "'");
  }
  if (isVolatile && ::fsconfig(fsFd, FSCONFIG_SET_FLAG, "volatile", nullptr, 0) != 0) {
    return fail("mount the overlay for '" + rootfs + "' volatile (Linux 5.10+)");
  }
  if (actors::fs::disk().createFileSystem(fsFd, rootfs.c_str()) != 0) {
    *createErrno = errno;
    return fail("create the overlay for '" + rootfs + "'");
  }
  int mountFd = ::fsmount(fsFd, FSMOUNT_CLOEXEC, 0);
  if (mountFd < 0) return fail("mount the overlay for '" + rootfs + "'");
  ::close(fsFd);
  int moved = actors::fs::disk().moveMount(mountFd, "", AT_FDCWD, rootfs.c_str(), MOVE_MOUNT_F_EMPTY_PATH);
  int err = errno;
  ::close(mountFd);
  if (moved != 0) return actors::errnoError(ErrorKind::IO, "Failed to attach the overlay at '" + rootfs + "'", err);
  return Nothing{};
}

Try<Nothing> mountWithLinks(const std::vector<std::string>& layers, const std::string& upper, const std::string& work,
                            const std::string& rootfs, bool isVolatile, int* createErrno) {
  auto links = linkLayers(layers);
  if (links.isError()) return links.error();
  // No path of ours goes into the options (a ',' or ':' in one would be
  // read as a separator): each is named by a descriptor of this process.
  auto named = MountPaths::open({*links, upper, work});
  if (named.isError()) {
    (void)actors::fs::removeTree(*links);
    return named.error();
  }
  const std::string options = overlayMountOptions(named->path(0), layers.size(), named->path(1), named->path(2)) +
                              (isVolatile ? ",volatile" : "");
  int rc = actors::fs::disk().mount("overlay", rootfs.c_str(), "overlay", 0, options.c_str());
  int err = errno;
  if (rc != 0) *createErrno = err;
  (void)actors::fs::removeTree(*links);
  if (rc != 0) {
    const std::string hint = isVolatile && err == EINVAL
                                 ? " (overlay's 'volatile' needs Linux 5.10 or later: without --overlay_volatile?)"
                                 : "";
    return actors::errnoError(
        ErrorKind::IO,
        "Failed to mount the overlay of " + std::to_string(layers.size()) + " layers at '" + rootfs + "'" + hint, err);
  }
  return Nothing{};
}

// The work dir's detached view, opened at the first provision that wants
// it; set aside for good once the kernel refuses a mount through it.
class OverlayView {
 public:
  explicit OverlayView(std::string root) : root_(std::move(root)) {}

  // The view, or null: none wanted, none to be had, or refused.
  const mount::DetachedView* get() {
    std::lock_guard lock(mutex_);
    if (!opened_) {
      opened_ = true;
      auto view = mount::DetachedView::open(root_);
      if (view.isError()) {
        actors::log(actors::LogLevel::Warn, "backend.overlay_view",
                    {{"root", root_}, {"error", view.error().message}, {"then", "layers named by their own paths"}});
      } else {
        view_ = std::move(*view);
      }
    }
    return refused_ ? nullptr : view_.get();  // view_ stays while this lives: a caller may still hold it
  }

  void refuse(const std::string& error) {
    std::lock_guard lock(mutex_);
    if (refused_) return;
    refused_ = true;
    actors::log(actors::LogLevel::Info, "backend.overlay_view",
                {{"root", root_}, {"error", error}, {"then", "layers named by their own paths"}});
  }

 private:
  const std::string root_;
  std::mutex mutex_;
  bool opened_ = false;
  bool refused_ = false;
  std::unique_ptr<mount::DetachedView> view_;
};

Try<Nothing> mountOverlay(const std::vector<std::string>& layers, const std::string& upper, const std::string& work,
                          const std::string& rootfs, bool useLowerdirPlus, bool isVolatile, int* createErrno) {
  Try<Nothing> mounted = useLowerdirPlus ? mountWithLowerdirPlus(layers, upper, work, rootfs, isVolatile, createErrno)
                                         : Try<Nothing>(Error(ErrorKind::Unsupported, "lowerdir+ disabled"));
  if (mounted.isError() && mounted.error().kind == ErrorKind::Unsupported) {
    mounted = mountWithLinks(layers, upper, work, rootfs, isVolatile, createErrno);
  }
  return mounted;
}

// Through `view` when there is one (see OverlayView). Kernels before 6.15
// refuse a layer reached through a detached mount: making the file system
// fails with EINVAL. Then, and only then, the real paths are tried, in a
// fresh workdir (the first try may have left overlayfs's own state there),
// and when they work the view is set aside for good. Any other failure is
// the provision's. `layerStats`: statx(2) of each layer (DetachedView's).
Try<Nothing> mountOverlayThrough(OverlayView* view, const std::vector<std::string>& layers,
                                 const std::vector<struct statx>& layerStats, const std::string& scratch,
                                 const std::string& rootfs, bool useLowerdirPlus, bool isVolatile) {
  const std::string upper = scratchUpper(scratch), work = scratchWork(scratch);
  int createErrno = 0;
  const mount::DetachedView* detached = view ? view->get() : nullptr;
  if (!detached) return mountOverlay(layers, upper, work, rootfs, useLowerdirPlus, isVolatile, &createErrno);
  std::vector<std::string> lowers;
  lowers.reserve(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) lowers.push_back(detached->through(layers[i], layerStats[i]));
  // The scratch's two directories were made in it just now: they are the
  // same through the copy when the scratch is.
  const std::string viewedScratch = detached->through(scratch);
  const std::string viewedUpper = scratchUpper(viewedScratch), viewedWork = scratchWork(viewedScratch);
  auto mounted = mountOverlay(lowers, viewedUpper, viewedWork, rootfs, useLowerdirPlus, isVolatile, &createErrno);
  const bool viewed = lowers != layers || viewedScratch != scratch;
  if (mounted.isSome() || !viewed || createErrno != EINVAL) return mounted;
  auto removed = actors::fs::removeTree(work);
  if (removed.isError()) return removed.error();
  if (auto made = actors::fs::makeDirectories(work); made.isError()) return made.error();
  auto direct = mountOverlay(layers, upper, work, rootfs, useLowerdirPlus, isVolatile, &createErrno);
  if (direct.isSome()) view->refuse(mounted.error().message);
  return direct;
}

// The rootfs's scratch, new and empty, with its upperdir and workdir. A
// provision of the same rootfs that crashed may have left one: it goes.
Try<Nothing> makeScratch(const std::string& backendDir, const std::string& scratch) {
  auto there = actors::fs::makeDirectoriesBelow(backendDir, scratch);
  if (there.isError()) return there.error();
  if (*there) {
    if (auto removed = actors::fs::removeTree(scratch); removed.isError()) return removed.error();
    if (auto made = actors::fs::makeDirectories(scratch); made.isError()) return made.error();
  }
  for (const auto& dir : {scratchUpper(scratch), scratchWork(scratch)}) {
    if (actors::fs::disk().mkdirat(AT_FDCWD, dir.c_str(), 0777) != 0) {
      return actors::errnoError(ErrorKind::IO, "Failed to create directory '" + dir + "'", errno);
    }
  }
  return Nothing{};
}

Try<RootfsInfo> provisionBlocking(const std::vector<std::string>& layers, const std::string& rootfs,
                                  const std::string& backendDir, bool useLowerdirPlus, bool isVolatile,
                                  OverlayView* view) {
  auto named = scratchDir(backendDir, rootfs);
  if (named.isError()) return named.error();
  const std::string scratch = *named;
  std::vector<struct statx> layerStats(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (!mount::statForView(layers[i], &layerStats[i]) || !S_ISDIR(layerStats[i].stx_mode)) {
      return Error(ErrorKind::NotFound,
                   "Failed to provision '" + rootfs + "': layer '" + layers[i] + "' is not a directory");
    }
  }
  if (auto created = createMountPoint(rootfs); created.isError()) return created.error();

  Try<Nothing> mounted = makeScratch(backendDir, scratch);
  if (mounted.isSome()) {
    mounted = mountOverlayThrough(view, layers, layerStats, scratch, rootfs, useLowerdirPlus, isVolatile);
    if (mounted.isSome()) {
      mounted = mount::makeSharedSlave(rootfs);
      if (mounted.isError()) (void)mount::unmountLazily(rootfs);
    }
  }
  if (mounted.isError()) {
    (void)removeMountPoint(rootfs);
    (void)actors::fs::removeTree(scratch);
    return mounted.error();
  }
  return RootfsInfo{{scratchUpper(scratch), scratchWork(scratch)}};
}

class OverlayBackendProcess : public actors::Process<OverlayBackendProcess> {
 public:
  OverlayBackendProcess(bool useLowerdirPlus, bool isVolatile, const std::string& viewRoot)
      : Process("overlay-provisioner-backend"), useLowerdirPlus_(useLowerdirPlus), volatile_(isVolatile),
        view_(viewRoot.empty() ? nullptr : std::make_shared<OverlayView>(viewRoot)) {}

  Future<RootfsInfo> provision(const std::vector<std::string>& layers, const std::string& rootfs,
                               const std::string& backendDir) {
    if (layers.empty()) {
      return Error(ErrorKind::InvalidArgument, "Failed to provision '" + rootfs + "': no filesystem layers were given");
    }
    if (layers.size() > kMaxLayers) {
      return Error(ErrorKind::InvalidArgument, "Failed to provision '" + rootfs +
                                                   "': " + std::to_string(layers.size()) +
                                                   " layers exceed overlayfs's limit of " + std::to_string(kMaxLayers));
    }
    return actors::async(runtime(),
                         [layers, rootfs, backendDir, plus = useLowerdirPlus_, isVolatile = volatile_, view = view_] {
                           return provisionBlocking(layers, rootfs, backendDir, plus, isVolatile, view.get());
                         });
  }

  Future<bool> destroy(const std::string& rootfs, const std::string& backendDir) {
    auto scratch = scratchDir(backendDir, rootfs);
    if (scratch.isError()) return scratch.error();
    return destroyMountedRootfs(runtime(), rootfs, *scratch);
  }

 private:
  bool useLowerdirPlus_;
  bool volatile_;
  std::shared_ptr<OverlayView> view_;  // null: no view root; shared with provisions on the blocking pool
};

}  // namespace

Try<std::unique_ptr<Backend>> makeOverlayBackend(actors::Runtime& runtime, bool useLowerdirPlus, bool isVolatile,
                                                 const std::string& viewRoot) {
  if (::geteuid() != 0) {
    return Error(ErrorKind::Unsupported, "The overlay backend requires root privileges");
  }
  if (!mount::kernelSupports("overlay")) {
    return Error(ErrorKind::Unsupported,
                 "The overlay backend needs overlayfs, which /proc/filesystems does not list "
                 "(try 'modprobe overlay')");
  }
  return std::unique_ptr<Backend>(std::make_unique<ProcessBackend<OverlayBackendProcess>>(
      runtime, kOverlay, useLowerdirPlus, isVolatile, viewRoot));
}

}  // namespace prov::backend
