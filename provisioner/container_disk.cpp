#include "provisioner/container_disk.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>

#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include "provisioner/paths.hpp"
#include "store/atomic_file.hpp"

namespace prov::provisioner {

namespace {

ContainerInfo readContainer(const std::string& id, const std::string& dir) {
  ContainerInfo info{id, {}};
  (void)store::removeStaleTemporaries(dir);  // a record write a kill cut short
  std::map<std::string, messages::ContainerRootfs> recorded;
  if (auto bytes = actors::fs::readFile(paths::record(dir)); bytes.isSome()) {
    messages::ContainerRecord record;
    if (record.ParseFromString(*bytes)) {
      for (const auto& rootfs : record.rootfses()) recorded[rootfs.id()] = rootfs;
    }
  }
  for (const auto& backend : actors::fs::listDirectory(paths::backendsDir(dir), true)) {
    for (const auto& rootfsId : actors::fs::listDirectory(paths::rootfses(dir, backend), true)) {
      auto it = recorded.find(rootfsId);
      messages::ContainerRootfs rootfs = it != recorded.end() ? it->second : messages::ContainerRootfs();
      rootfs.set_id(rootfsId);
      rootfs.set_backend(backend);
      info.rootfses.push_back(rootfs);
      if (it != recorded.end()) recorded.erase(it);
    }
  }
  // Recorded but not (or not yet) on disk: still counted, so GC keeps its
  // layers until the container is destroyed.
  for (const auto& [rootfsId, rootfs] : recorded) info.rootfses.push_back(rootfs);
  return info;
}

void scan(const std::string& dir, const std::string& prefix, std::vector<ContainerInfo>& out) {
  for (const auto& name : actors::fs::listDirectory(paths::children(dir), true)) {
    const std::string id = prefix.empty() ? name : prefix + "/" + name;
    const std::string containerDir = paths::child(dir, name);
    out.push_back(readContainer(id, containerDir));
    scan(containerDir, id, out);
  }
}

}  // namespace

Try<std::vector<ContainerInfo>> scanContainers(const std::string& root) {
  std::vector<ContainerInfo> found;
  scan(root, "", found);
  return found;
}

Try<int> lockWorkDir(const std::string& workDir) {
  const std::string path = paths::lockFile(workDir);
  const int fd = actors::fs::disk().openat(AT_FDCWD, path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Error(ErrorKind::IO, "Failed to open the lock file '" + path + "': " + std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char pid[32] = {};
    const ssize_t n = ::pread(fd, pid, sizeof(pid) - 1, 0);
    ::close(fd);
    if (error == EWOULDBLOCK) {
      std::string holder = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "unknown";
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      return Error(ErrorKind::Unavailable,
                   "Failed to lock the work dir '" + workDir + "': another provisioner (pid " + holder + ") uses it");
    }
    return Error(ErrorKind::IO, "Failed to lock '" + path + "': " + std::strerror(error));
  }
  const std::string self = std::to_string(::getpid()) + "\n";
  if (actors::fs::disk().ftruncate(fd, 0) != 0 || ::pwrite(fd, self.data(), self.size(), 0) < 0) {
    ::close(fd);
    return Error(ErrorKind::IO, "Failed to write the lock file '" + path + "': " + std::strerror(errno));
  }
  return fd;
}

}  // namespace prov::provisioner
