#include "backend/backend.hpp"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "actors/async.hpp"
#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include "backend/backends.hpp"
#include "backend/mount.hpp"

namespace prov::backend {

namespace {

// statfs magics of file systems that cannot host overlay or aufs branches.
constexpr long kOverlayMagic = 0x794c7630;
constexpr long kBtrfsMagic = 0x9123683e;
constexpr long kZfsMagic = 0x2fc12fc1;
constexpr long kEcryptfsMagic = 0xf15f;
constexpr long kAufsMagic = 0x61756673;

bool unsuitableForLayers(long fsType) {
  return fsType == kOverlayMagic || fsType == kBtrfsMagic || fsType == kZfsMagic || fsType == kEcryptfsMagic ||
         fsType == kAufsMagic;
}

// The nearest existing directory at or above `path`.
std::string existingAncestor(std::string path) {
  while (!path.empty() && !actors::fs::exists(path)) {
    path = std::filesystem::path(path).parent_path().string();
    if (path == "/") break;
  }
  return path.empty() ? "/" : path;
}

}  // namespace

Try<std::unique_ptr<Backend>> createBackend(actors::Runtime& runtime, const std::string& name,
                                            const BackendOptions& options) {
  if (name == kCopy) {
    std::size_t parallelism = options.copyParallelism;
    if (parallelism == 0) parallelism = std::min<std::size_t>(8, runtime.blockingThreads());
    return makeCopyBackend(runtime, parallelism);
  }
  if (name == kBind) return makeBindBackend(runtime);
  if (name == kOverlay) {
    return makeOverlayBackend(runtime, options.overlayUseLowerdirPlus, options.overlayVolatile,
                              options.overlayViewRoot);
  }
  if (name == kAufs) return makeAufsBackend(runtime);
  return Error(ErrorKind::InvalidArgument, "Unknown backend '" + name + "': expected one of copy, bind, overlay, aufs");
}

std::map<std::string, std::unique_ptr<Backend>> createBackends(actors::Runtime& runtime,
                                                               const BackendOptions& options) {
  std::map<std::string, std::unique_ptr<Backend>> backends;
  for (const char* name : {kCopy, kBind, kOverlay, kAufs}) {
    auto backend = createBackend(runtime, name, options);
    if (backend.isSome()) backends.emplace(name, std::move(*backend));
  }
  return backends;
}

std::string chooseBackend(const HostSupport& host) {
  if (host.root && !unsuitableForLayers(host.workDirFsType)) {
    if (host.overlay && host.workDirDType) return kOverlay;
    if (host.aufs) return kAufs;
  }
  return kCopy;
}

std::string defaultBackend(const std::string& workDir) {
  HostSupport host;
  host.root = ::geteuid() == 0;
  host.overlay = mount::kernelSupports("overlay");
  host.aufs = mount::kernelSupports("aufs");
  const std::string dir = existingAncestor(workDir);
  auto type = mount::fileSystemType(dir);
  host.workDirFsType = type.isSome() ? *type : 0;
  auto dtype = mount::supportsDType(dir);
  host.workDirDType = dtype.isSome() && *dtype;
  return chooseBackend(host);
}

Try<std::string> scratchDir(const std::string& backendDir, const std::string& rootfs) {
  std::string named = rootfs;  // "r/" is named as "r"
  while (named.size() > 1 && named.back() == '/') named.pop_back();
  const std::string name = std::filesystem::path(named).filename().string();
  if (name.empty() || name == "." || name == "..") {
    return Error(ErrorKind::InvalidArgument, "The rootfs path '" + rootfs + "' does not end in a name");
  }
  return backendDir + "/scratch/" + name;
}

Try<Nothing> createMountPoint(const std::string& rootfs) {
  if (actors::fs::disk().mkdirat(AT_FDCWD, rootfs.c_str(), 0755) != 0) {
    if (errno == EEXIST) {
      return Error(ErrorKind::AlreadyExists, "Failed to provision '" + rootfs + "': it is already provisioned");
    }
    return actors::errnoError(ErrorKind::IO, "Failed to create rootfs '" + rootfs + "'", errno);
  }
  return Nothing{};
}

Try<Nothing> removeMountPoint(const std::string& rootfs) {
  if (actors::fs::disk().unlinkat(AT_FDCWD, rootfs.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT) return Nothing{};
  if (errno == EBUSY) {
    std::fprintf(stderr, "backend: rootfs '%s' is still busy; leaving its mount point\n", rootfs.c_str());
    return Nothing{};
  }
  return actors::errnoError(ErrorKind::IO, "Failed to remove rootfs '" + rootfs + "'", errno);
}

Future<bool> destroyMountedRootfs(actors::Runtime& runtime, const std::string& rootfs, const std::string& scratch) {
  // found: anything of it was there; scratchLeft: the scratch is too big to
  // remove here, and goes on to the blocking pool.
  struct Unmounted {
    bool found = false;
    bool scratchLeft = false;
  };
  Future<Unmounted> unmounted = actors::asyncWaiting(runtime, [rootfs, scratch]() -> Try<Unmounted> {
    Unmounted done;
    if (actors::fs::exists(rootfs)) {
      // Unmounting is the test: EINVAL means it was not a mount point, which
      // saves reading the mount table on every destroy.
      if (actors::fs::disk().umount2(rootfs.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL) {
        return actors::errnoError(ErrorKind::IO, "Failed to unmount '" + rootfs + "'", errno);
      }
      if (auto removed = removeMountPoint(rootfs); removed.isError()) return removed.error();
      done.found = true;
    }
    if (scratch.empty()) return done;
    // A scratch the container wrote little to (an overlay's upperdir and
    // workdir and a few entries) goes here too: a second job would cost a
    // hand-off between threads, a good part of a provision+destroy pair.
    auto removed = actors::fs::removeSmallTree(scratch, kScratchRemovedInPlace);
    if (removed.isSome()) {
      done.found = done.found || *removed;
    } else if (removed.error().kind == ErrorKind::ResourceExhausted) {
      done.found = true;  // it was there, maybe partly removed already
      done.scratchLeft = true;
    } else {
      return removed.error();
    }
    return done;
  });
  auto removeScratch = [scratch](bool found) -> Future<bool> {
    auto removed = actors::fs::removeTree(scratch);
    if (removed.isError()) return removed.error();
    return found || *removed;
  };
  // A bigger scratch is removed on the blocking pool (removal is work, not
  // a wait). Once unmounted, the scratch goes too: a discard does not stop
  // halfway, and a runtime shutting down (which refuses new work) gets it
  // done here.
  return actors::undiscardable(unmounted.then([&runtime, removeScratch](const Unmounted& done) -> Future<bool> {
    if (!done.scratchLeft) return done.found;
    Future<bool> removed = actors::async(runtime, [removeScratch, done] { return removeScratch(done.found); });
    if (removed.isFailed() && !runtime.accepting()) return removeScratch(done.found);
    return removed;
  }));
}

Try<std::string> linkLayers(const std::vector<std::string>& layers) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) {
    return actors::errnoError(ErrorKind::IO, "Failed to create a directory for layer links", errno);
  }
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const std::string link = dir + "/" + std::to_string(i);
    if (actors::fs::disk().symlinkat(layers[i].c_str(), AT_FDCWD, link.c_str()) != 0) {
      auto error = actors::errnoError(ErrorKind::IO, "Failed to link layer '" + layers[i] + "'", errno);
      (void)actors::fs::removeTree(dir);
      return error;
    }
  }
  return dir;
}

Try<MountPaths> MountPaths::open(const std::vector<std::string>& paths) {
  MountPaths named;
  for (const auto& path : paths) {
    actors::fs::Fd fd(actors::fs::disk().openat(AT_FDCWD, path.c_str(), O_PATH | O_DIRECTORY));
    if (!fd.valid()) return actors::errnoError(ErrorKind::IO, "Failed to open '" + path + "'", errno);
    named.fds_.push_back(std::make_shared<actors::fs::Fd>(std::move(fd)));
  }
  return named;
}

std::string MountPaths::path(std::size_t i) const { return "/proc/self/fd/" + std::to_string(fds_.at(i)->get()); }

std::string overlayMountOptions(const std::string& links, std::size_t layerCount, const std::string& upperdir,
                                const std::string& workdir) {
  std::string options = "lowerdir=";
  for (std::size_t i = layerCount; i-- > 0;) {
    options += links + "/" + std::to_string(i);
    if (i != 0) options += ":";
  }
  return options + ",upperdir=" + upperdir + ",workdir=" + workdir;
}

std::string aufsMountOptions(const std::string& workdir, const std::string& links, std::size_t layerCount) {
  std::string options = "dirs=" + workdir + "=rw";
  for (std::size_t i = layerCount; i-- > 0;) options += ":" + links + "/" + std::to_string(i) + "=ro+wh";
  return options;
}

}  // namespace prov::backend
