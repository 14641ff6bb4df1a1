#include "bench/provision_floor.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "backend/backends.hpp"
#include "backend/mount.hpp"
#include "provisioner/paths.hpp"

namespace prov::bench {

namespace {

// About the size of a two-layer ContainerRecord, before and after its rootfs.
const std::string kRecordBefore(200, 'r');
const std::string kRecordAfter(280, 'r');

Try<Nothing> failed(const std::string& what, const std::string& path) {
  return actors::errnoError(ErrorKind::IO, "floor: " + what + " '" + path + "'", errno);
}

Try<Nothing> writeRecord(const std::string& path, const std::string& content) {
  const std::string temporary = path + ".tmp-floor";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return failed("create", temporary);
  const bool written = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ::close(fd);
  if (!written) return failed("write", temporary);
  if (::rename(temporary.c_str(), path.c_str()) != 0) return failed("rename", temporary);
  return Nothing{};
}

Try<Nothing> makeDirectory(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) return failed("mkdir", path);
  return Nothing{};
}

// `*refused`: making the file system failed with EINVAL (a kernel before
// 6.15 refusing layers named through a detached mount). `layers` uppermost
// first, the order lowerdir+ takes them in.
Try<Nothing> mountOverlay(const std::vector<std::string>& layers, const std::string& upper, const std::string& work,
                          const std::string& rootfs, bool* refused, bool isVolatile = false) {
  const int fsFd = ::fsopen("overlay", FSOPEN_CLOEXEC);
  if (fsFd < 0) return failed("fsopen overlay for", rootfs);
  bool ok = true;
  for (const auto& layer : layers) ok = ok && ::fsconfig(fsFd, FSCONFIG_SET_STRING, "lowerdir+", layer.c_str(), 0) == 0;
  ok = ok && ::fsconfig(fsFd, FSCONFIG_SET_STRING, "upperdir", upper.c_str(), 0) == 0;
  ok = ok && ::fsconfig(fsFd, FSCONFIG_SET_STRING, "workdir", work.c_str(), 0) == 0;
  ok = ok && (!isVolatile || ::fsconfig(fsFd, FSCONFIG_SET_FLAG, "volatile", nullptr, 0) == 0);
  if (ok && ::fsconfig(fsFd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    ok = false;
    *refused = errno == EINVAL;
  }
  const int mountFd = ok ? ::fsmount(fsFd, FSMOUNT_CLOEXEC, 0) : -1;
  const int error = errno;
  ::close(fsFd);
  errno = error;
  if (mountFd < 0) return failed("make the overlay for", rootfs);
  ok = ::move_mount(mountFd, "", AT_FDCWD, rootfs.c_str(), MOVE_MOUNT_F_EMPTY_PATH) == 0;
  ::close(mountFd);
  if (!ok) return failed("move_mount to", rootfs);
  if (::mount(nullptr, rootfs.c_str(), nullptr, MS_SLAVE, nullptr) != 0 ||
      ::mount(nullptr, rootfs.c_str(), nullptr, MS_SHARED, nullptr) != 0) {
    auto error = failed("set the propagation of", rootfs);
    ::umount2(rootfs.c_str(), MNT_DETACH);
    return error;
  }
  return Nothing{};
}

// Through `view` until the kernel refuses it (`*viewRefused`), as the
// overlay backend does.
Try<Nothing> provisionOne(const std::string& root, const std::vector<std::string>& layers, const std::string& id,
                          const backend::mount::DetachedView* view, std::atomic<bool>* viewRefused) {
  namespace paths = provisioner::paths;
  const std::string container = paths::container(root, id);
  const std::string backendDir = paths::backendDir(container, "overlay");
  const std::string rootfs = paths::rootfs(container, "overlay", "floor");
  const std::string scratch = *backend::scratchDir(backendDir, rootfs);
  Try<Nothing> done = makeDirectory(container, 0777);
  if (done.isSome()) done = writeRecord(paths::record(container), kRecordBefore);
  for (const auto& dir : {paths::backendsDir(container), backendDir, paths::rootfses(container, "overlay")}) {
    if (done.isSome()) done = makeDirectory(dir, 0777);
  }
  if (done.isSome()) done = makeDirectory(rootfs, 0755);
  for (const auto& dir :
       {backendDir + "/scratch", scratch, backend::scratchUpper(scratch), backend::scratchWork(scratch)}) {
    if (done.isSome()) done = makeDirectory(dir, 0777);
  }
  const std::string upper = backend::scratchUpper(scratch), work = backend::scratchWork(scratch);
  // Each layer's statx, which the backend makes anyway (is it a directory)
  // and the view's check then uses; the scratch checked for its two
  // directories.
  std::vector<struct statx> layerStats(layers.size());
  for (std::size_t i = 0; done.isSome() && i < layers.size(); ++i) {
    if (!backend::mount::statForView(layers[i], &layerStats[i])) done = failed("statx", layers[i]);
  }
  bool refused = false, byRealPaths = true;
  if (done.isSome() && view && !*viewRefused) {
    std::vector<std::string> lowers;
    for (std::size_t i = 0; i < layers.size(); ++i) lowers.push_back(view->through(layers[i], layerStats[i]));
    const std::string viewedScratch = view->through(scratch);
    auto through = mountOverlay(lowers, backend::scratchUpper(viewedScratch), backend::scratchWork(viewedScratch),
                                rootfs, &refused);
    if (through.isSome() || !refused) {
      done = through;
      byRealPaths = false;
    } else {
      *viewRefused = true;
    }
  }
  if (done.isSome() && byRealPaths) done = mountOverlay(layers, upper, work, rootfs, &refused);
  if (done.isSome()) done = writeRecord(paths::record(container), kRecordAfter);
  return done;
}

// Removes the tree `name` under `parentFd` as it reads it: each directory
// opened and read, its entries unlinked (a directory emptied first), then
// the directory itself, as the backend's destroy removes a scratch.
Try<Nothing> removeTree(int parentFd, const std::string& name) {
  const int fd = ::openat(parentFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return failed("open", name);
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    return failed("read", name);
  }
  Try<Nothing> done = Nothing{};
  while (const dirent* entry = ::readdir(dir)) {
    const std::string child = entry->d_name;
    if (child == "." || child == "..") continue;
    if (entry->d_type == DT_DIR) {
      done = removeTree(fd, child);
    } else if (::unlinkat(fd, child.c_str(), 0) != 0) {
      done = failed("unlink", child);
    }
    if (done.isError()) break;
  }
  ::closedir(dir);
  if (done.isSome() && ::unlinkat(parentFd, name.c_str(), AT_REMOVEDIR) != 0) return failed("rmdir", name);
  return done;
}

// One overlay rootfs made and destroyed as the overlay backend does it.
Try<Nothing> pairOne(const std::string& root, const std::vector<std::string>& layers, std::size_t i, bool isVolatile) {
  const std::string name = "r" + std::to_string(i);
  const std::string rootfs = root + "/floor-rootfses/" + name;
  const std::string scratches = root + "/floor-backend/scratch";
  const std::string scratch = scratches + "/" + name;
  const std::string upper = backend::scratchUpper(scratch), work = backend::scratchWork(scratch);
  Try<Nothing> done = makeDirectory(rootfs, 0755);
  for (const auto& dir : {scratch, upper, work}) {
    if (done.isSome()) done = makeDirectory(dir, 0777);
  }
  bool refused = false;
  if (done.isSome()) done = mountOverlay(layers, upper, work, rootfs, &refused, isVolatile);
  if (done.isError()) return done;
  if (::umount2(rootfs.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) return failed("umount", rootfs);
  if (::rmdir(rootfs.c_str()) != 0) return failed("rmdir", rootfs);
  return removeTree(AT_FDCWD, scratch);
}

// `count` calls of `one` (given 0..count-1) from `threads` plain threads:
// calls per second, or the first error, which ends the round.
Try<double> perSecond(std::size_t count, std::size_t threads, const std::function<Try<Nothing>(std::size_t)>& one) {
  std::atomic<std::size_t> next{0};
  std::mutex mutex;
  std::optional<Error> firstError;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (std::size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (std::size_t i; (i = next++) < count;) {
        auto done = one(i);
        if (done.isError()) {
          std::lock_guard lock(mutex);
          if (!firstError) firstError = done.error();
          next = count;
        }
      }
    });
  }
  for (auto& worker : workers) worker.join();
  if (firstError) return *firstError;
  return static_cast<double>(count) / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Try<double> provisionFloor(const std::string& root, const std::vector<std::string>& layers, const std::string& prefix,
                           std::size_t count, std::size_t threads, const std::string& viewRoot) {
  std::unique_ptr<backend::mount::DetachedView> view;
  std::atomic<bool> viewRefused{false};
  if (!viewRoot.empty()) {
    auto opened = backend::mount::DetachedView::open(viewRoot);
    if (opened.isError()) return opened.error();
    view = std::move(*opened);
  }
  if (::mkdir(provisioner::paths::children(root).c_str(), 0777) != 0 && errno != EEXIST) {
    return Error(failed("mkdir", provisioner::paths::children(root)).error());
  }
  return perSecond(count, threads, [&](std::size_t i) {
    return provisionOne(root, layers, prefix + std::to_string(i), view.get(), &viewRefused);
  });
}

Try<double> pairsFloor(const std::string& root, const std::vector<std::string>& layers, std::size_t count,
                       std::size_t threads, bool isVolatile) {
  std::error_code error;
  for (const char* dir : {"/floor-rootfses", "/floor-backend/scratch"}) {
    std::filesystem::create_directories(root + dir, error);
    if (error) return Error(ErrorKind::IO, "floor: mkdir '" + root + dir + "': " + error.message());
  }
  return perSecond(count, threads, [&](std::size_t i) { return pairOne(root, layers, i, isVolatile); });
}

}  // namespace prov::bench
