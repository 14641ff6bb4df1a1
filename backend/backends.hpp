#pragma once

// Constructors of the individual backends (backend.cpp picks among them).
// Each checks what it needs and fails with ErrorKind::Unsupported when this
// machine cannot run it.

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "actors/fs.hpp"
#include "backend/backend.hpp"

namespace prov::backend {

Try<std::unique_ptr<Backend>> makeCopyBackend(actors::Runtime& runtime, std::size_t parallelism);
Try<std::unique_ptr<Backend>> makeBindBackend(actors::Runtime& runtime);
Try<std::unique_ptr<Backend>> makeOverlayBackend(actors::Runtime& runtime, bool useLowerdirPlus, bool isVolatile,
                                                 const std::string& viewRoot = "");
Try<std::unique_ptr<Backend>> makeAufsBackend(actors::Runtime& runtime);

// The aufs mount data for a rw branch `workdir` over `layerCount` layers
// linked as <links>/0 (base) .. <links>/<n-1> (top): the top layer first.
std::string aufsMountOptions(const std::string& workdir, const std::string& links, std::size_t layerCount);

// The overlay mount data for layers linked as <links>/0 .. <links>/<n-1>,
// used where the kernel has no `lowerdir+`.
std::string overlayMountOptions(const std::string& links, std::size_t layerCount, const std::string& upperdir,
                                const std::string& workdir);

// Directories named in mount data by a descriptor of this process
// ("/proc/self/fd/N"), so that no character of their paths (',', ':', '='
// included) is read as a separator. Open while the object lives.
class MountPaths {
 public:
  static Try<MountPaths> open(const std::vector<std::string>& paths);
  std::string path(std::size_t i) const;

 private:
  std::vector<std::shared_ptr<actors::fs::Fd>> fds_;
};

// Short links to the layers: makes a fresh directory under $TMPDIR (or
// /tmp) holding symlinks 0..n-1 to `layers`, so that mount data stays under
// the kernel's one-page limit whatever the layer paths' length (MESOS-6000).
Try<std::string> linkLayers(const std::vector<std::string>& layers);

// Creates the rootfs mount point: AlreadyExists if `rootfs` exists.
Try<Nothing> createMountPoint(const std::string& rootfs);

// Removes the mount point of a destroyed rootfs; EBUSY (a lazily detached
// mount still in use) is reported on stderr and not an error.
Try<Nothing> removeMountPoint(const std::string& rootfs);

// How many entries a scratch may hold for a destroy to remove it on the
// waiting pool, beside the unmount (an overlay's holds 3 to 5 of its own).
inline constexpr std::size_t kScratchRemovedInPlace = 64;

// Destroys a mounted rootfs: lazy unmount if mounted and removal of the
// mount point, on the runtime's waiting pool (unmounting an overlay or aufs
// sleeps through its upper file system's sync and journal commit, and many
// of those at once share a commit), then removal of `scratch` (if not
// empty): there too when it holds at most kScratchRemovedInPlace entries,
// else on the blocking pool (removal is work, not a wait). True when any of
// it existed.
Future<bool> destroyMountedRootfs(actors::Runtime& runtime, const std::string& rootfs, const std::string& scratch);

// Where a backend keeps state for `rootfs`: backendDir/scratch/<basename>,
// holding upperdir/ and workdir/ (overlay) or workdir/ (aufs). Trailing
// slashes are not part of the name. InvalidArgument when `rootfs` ends in
// no name ("", "/", "x/.", "x/..": the scratch directory itself, or above).
Try<std::string> scratchDir(const std::string& backendDir, const std::string& rootfs);
inline std::string scratchUpper(const std::string& scratch) { return scratch + "/upperdir"; }
inline std::string scratchWork(const std::string& scratch) { return scratch + "/workdir"; }

struct HostSupport {
  bool root = false;
  bool overlay = false;      // /proc/filesystems
  bool aufs = false;         // /proc/filesystems
  long workDirFsType = 0;    // statfs magic of the work dir's file system
  bool workDirDType = true;  // readdir gives d_type there
};

// Mesos's order: overlay, then aufs, then copy.
std::string chooseBackend(const HostSupport& host);

}  // namespace prov::backend
