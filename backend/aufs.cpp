// The aufs backend, where the kernel has aufs: a rw branch
// backendDir/scratch/<rootfs name>/workdir over the layers, linked through
// short symlinks (MESOS-6001) and mounted with aufsMountOptions().
//
// Limitation: aufs reads whiteouts in its own form (.wh.<name> files), while
// the store keeps layers in overlay form (0/0 character devices and the
// trusted.overlay.opaque xattr). Images whose layers delete files need the
// overlay or copy backend; this kernel family has no aufs to test against.

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>

#include "actors/async.hpp"
#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include "actors/process.hpp"
#include "backend/backends.hpp"
#include "backend/mount.hpp"
#include "backend/process_backend.hpp"

namespace prov::backend {

namespace {

Try<RootfsInfo> provisionBlocking(const std::vector<std::string>& layers, const std::string& rootfs,
                                  const std::string& backendDir) {
  auto named = scratchDir(backendDir, rootfs);
  if (named.isError()) return named.error();
  const std::string scratch = *named;
  const std::string work = scratchWork(scratch);
  if (auto created = createMountPoint(rootfs); created.isError()) return created.error();
  Try<Nothing> mounted = actors::fs::makeDirectories(work);
  if (mounted.isSome()) {
    auto links = linkLayers(layers);
    if (links.isError()) {
      mounted = links.error();
    } else {
      auto named = MountPaths::open({work, *links});  // no path of ours in the options
      if (named.isError()) {
        mounted = named.error();
      } else if (const std::string options = aufsMountOptions(named->path(0), named->path(1), layers.size());
                 actors::fs::disk().mount("aufs", rootfs.c_str(), "aufs", 0, options.c_str()) != 0) {
        mounted = actors::errnoError(ErrorKind::IO, "Failed to mount aufs at '" + rootfs + "'", errno);
      }
      (void)actors::fs::removeTree(*links);
    }
  }
  if (mounted.isSome()) mounted = mount::makeSharedSlave(rootfs);
  if (mounted.isError()) {
    (void)mount::unmountLazily(rootfs);
    (void)removeMountPoint(rootfs);
    (void)actors::fs::removeTree(scratch);
    return mounted.error();
  }
  return RootfsInfo{{work}};
}

class AufsBackendProcess : public actors::Process<AufsBackendProcess> {
 public:
  AufsBackendProcess() : Process("aufs-provisioner-backend") {}

  Future<RootfsInfo> provision(const std::vector<std::string>& layers, const std::string& rootfs,
                               const std::string& backendDir) {
    if (layers.empty()) {
      return Error(ErrorKind::InvalidArgument, "Failed to provision '" + rootfs + "': no filesystem layers were given");
    }
    return actors::async(runtime(),
                         [layers, rootfs, backendDir] { return provisionBlocking(layers, rootfs, backendDir); });
  }

  Future<bool> destroy(const std::string& rootfs, const std::string& backendDir) {
    auto scratch = scratchDir(backendDir, rootfs);
    if (scratch.isError()) return scratch.error();
    return destroyMountedRootfs(runtime(), rootfs, *scratch);
  }
};

}  // namespace

Try<std::unique_ptr<Backend>> makeAufsBackend(actors::Runtime& runtime) {
  if (::geteuid() != 0) return Error(ErrorKind::Unsupported, "The aufs backend requires root privileges");
  if (!mount::kernelSupports("aufs")) {
    return Error(ErrorKind::Unsupported,
                 "The aufs backend needs aufs, which this kernel does not have (/proc/filesystems "
                 "does not list it); use overlay or copy");
  }
  return std::unique_ptr<Backend>(std::make_unique<ProcessBackend<AufsBackendProcess>>(runtime, kAufs));
}

}  // namespace prov::backend
