#pragma once

// Rootfs backends: each assembles a container's root filesystem from image
// layers kept in the store's form (whiteouts as overlay whiteouts: a 0/0
// character device hides a name, `trusted.overlay.opaque=y` hides a
// directory's lower contents).
//
//   copy     applies the layers in order into a fresh directory
//   bind     bind-mounts a single layer read-only
//   overlay  mounts an overlayfs with the layers as lower dirs
//   aufs     mounts aufs, where the kernel has it
//
// Each backend is an actor (a facade owning a process), with Mesos's
// interface. All calls may be made from any thread; results are futures.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "actors/future.hpp"
#include "actors/runtime.hpp"

namespace prov::backend {

using actors::Error;
using actors::ErrorKind;
using actors::Future;
using actors::Nothing;
using actors::Try;

inline constexpr const char* kCopy = "copy";
inline constexpr const char* kBind = "bind";
inline constexpr const char* kOverlay = "overlay";
inline constexpr const char* kAufs = "aufs";

// What a backend made besides the rootfs itself (the provisioner's
// ProvisionInfo adds the image to it).
struct RootfsInfo {
  // Directories the backend writes the container's changes to (overlay: its
  // upperdir and workdir), so that a disk isolator can account for them.
  std::vector<std::string> ephemeralVolumes;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;

  // Assembles `layers` (base layer first; later layers shadow earlier ones)
  // at `rootfs`, which must not exist yet; its parent must. `backendDir`
  // holds the backend's per-rootfs state (overlay: scratch/<rootfs name>/).
  // Fails with InvalidArgument for no layers (or, for bind, more than one),
  // AlreadyExists when `rootfs` exists, IO when a system call fails. On
  // failure nothing is left behind.
  virtual Future<RootfsInfo> provision(const std::vector<std::string>& layers, const std::string& rootfs,
                                       const std::string& backendDir) = 0;

  // Unmounts (lazily: files held open in the rootfs do not block it) and
  // removes `rootfs` and its state under `backendDir`. True when something
  // was there, false when nothing was. Idempotent.
  virtual Future<bool> destroy(const std::string& rootfs, const std::string& backendDir) = 0;
};

struct BackendOptions {
  // overlay: mount with the new mount API and `lowerdir+` when the kernel
  // has it (6.8+); false forces the short-symlink layout Mesos uses.
  bool overlayUseLowerdirPlus = true;
  // overlay: mount with `volatile` (Linux 5.10+): the kernel skips every
  // sync of the container's writable layer, fsync in the container
  // included, and the sync of the upper file system when a rootfs is
  // unmounted, which is most of what a destroy costs (a journal commit).
  // What a container wrote may be lost in a host crash; this provisioner
  // never mounts a rootfs again after one (a destroy removes it), so only
  // an agent that keeps data in a container's rootfs across a crash loses
  // anything. Off by default.
  bool overlayVolatile = false;
  // overlay: the work dir (every layer and rootfs is below it), or empty.
  // Its layers, upperdirs and workdirs are then named through a detached
  // copy of its mount (backend/mount.hpp, DetachedView), so that an overlay
  // mount costs the same beside 10,000 mounted rootfses as beside none; its
  // mountinfo options read /proc/self/fd/N/... for them.
  std::string overlayViewRoot = {};
  // copy: files copied at once (0: the runtime's blocking threads, at most 8).
  std::size_t copyParallelism = 0;
};

// The backend called `name`. Fails with InvalidArgument for an unknown name
// and Unsupported when this kernel or user cannot run it (bind, overlay and
// aufs need root; overlay and aufs need the file system in /proc/filesystems).
Try<std::unique_ptr<Backend>> createBackend(actors::Runtime& runtime, const std::string& name,
                                            const BackendOptions& options = {});

// Every backend this machine can run, by name.
std::map<std::string, std::unique_ptr<Backend>> createBackends(actors::Runtime& runtime,
                                                               const BackendOptions& options = {});

// The backend Mesos would choose for a work dir: overlay, then aufs, then
// copy. overlay and aufs need root and kernel support, and a work dir whose
// file system can host them (not overlay, btrfs, zfs, ecryptfs or aufs
// itself; overlay needs d_type).
std::string defaultBackend(const std::string& workDir);

}  // namespace prov::backend
