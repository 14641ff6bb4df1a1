// The bind backend: one layer, bind-mounted read-only (recursively) at the
// rootfs, then made shared+slave as Mesos does.

#include <fcntl.h>
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

Error mountError(const std::string& what, const std::string& path) {
  return actors::errnoError(ErrorKind::IO, "Failed to " + what + " '" + path + "'", errno);
}

// A recursive, read-only bind mount. The new mount API makes every mount in
// the cloned tree read-only (mount_setattr with AT_RECURSIVE); older kernels
// get MS_BIND|MS_REC and a read-only remount of the top.
Try<Nothing> bindReadOnly(const std::string& layer, const std::string& rootfs) {
  int tree = ::open_tree(AT_FDCWD, layer.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (tree >= 0) {
    struct mount_attr attr {};
    attr.attr_set = MOUNT_ATTR_RDONLY;
    bool ok = ::mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) == 0 &&
              actors::fs::disk().moveMount(tree, "", AT_FDCWD, rootfs.c_str(), MOVE_MOUNT_F_EMPTY_PATH) == 0;
    int err = errno;
    ::close(tree);
    if (ok) return Nothing{};
    errno = err;
    return mountError("bind-mount '" + layer + "' read-only at", rootfs);
  }
  if (errno != ENOSYS) return mountError("clone the mount tree of", layer);
  if (actors::fs::disk().mount(layer.c_str(), rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    return mountError("bind-mount '" + layer + "' at", rootfs);
  }
  if (actors::fs::disk().mount(nullptr, rootfs.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
    auto error = mountError("remount read-only", rootfs);
    actors::fs::disk().umount2(rootfs.c_str(), MNT_DETACH);
    return error;
  }
  return Nothing{};
}

Try<RootfsInfo> provisionBlocking(const std::string& layer, const std::string& rootfs) {
  if (auto created = createMountPoint(rootfs); created.isError()) return created.error();
  auto mounted = bindReadOnly(layer, rootfs);
  if (mounted.isSome()) mounted = mount::makeSharedSlave(rootfs);
  if (mounted.isError()) {
    if (auto isMount = mount::isMountPoint(rootfs); isMount.isSome() && *isMount) {
      (void)mount::unmountLazily(rootfs);
    }
    (void)removeMountPoint(rootfs);
    return mounted.error();
  }
  return RootfsInfo{};
}

class BindBackendProcess : public actors::Process<BindBackendProcess> {
 public:
  BindBackendProcess() : Process("bind-provisioner-backend") {}

  Future<RootfsInfo> provision(const std::vector<std::string>& layers, const std::string& rootfs, const std::string&) {
    if (layers.size() != 1) {
      return Error(ErrorKind::InvalidArgument,
                   "Failed to provision '" + rootfs + "': the bind backend takes exactly one layer, got " +
                       std::to_string(layers.size()) + "; use overlay or copy for multi-layer images");
    }
    return actors::async(runtime(), [layer = layers[0], rootfs] { return provisionBlocking(layer, rootfs); });
  }

  Future<bool> destroy(const std::string& rootfs, const std::string&) {
    return destroyMountedRootfs(runtime(), rootfs, "");
  }
};

}  // namespace

Try<std::unique_ptr<Backend>> makeBindBackend(actors::Runtime& runtime) {
  if (::geteuid() != 0) {
    return Error(ErrorKind::Unsupported, "The bind backend requires root privileges");
  }
  return std::unique_ptr<Backend>(std::make_unique<ProcessBackend<BindBackendProcess>>(runtime, kBind));
}

}  // namespace prov::backend
