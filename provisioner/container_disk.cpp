#include "provisioner/container_disk.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

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

namespace {

// The pid of the process holding a flock on `fd`'s file, as the kernel
// reports it in /proc/locks ("1: FLOCK  ADVISORY  WRITE <pid> <maj>:<min>:<ino> 0 EOF";
// blocked waiters are "1: -> FLOCK ..."); else the pid the holder wrote into
// the file; 0 when neither says yet.
pid_t lockHolder(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) == 0) {
    char device[64];
    std::snprintf(device, sizeof device, "%02x:%02x:%lu", major(st.st_dev), minor(st.st_dev),
                  static_cast<unsigned long>(st.st_ino));
    // Through a close-on-exec descriptor (std::ifstream's is not).
    auto text = actors::fs::readKernelFile("/proc/locks");
    std::istringstream locks(text.isSome() ? *text : std::string());
    for (std::string line; std::getline(locks, line);) {
      std::istringstream fields(line);
      std::string number, kind, mode, access, id;
      long pid = 0;
      fields >> number >> kind;
      if (kind == "->") continue;
      if (fields >> mode >> access >> pid >> id && kind == "FLOCK" && id == device && pid > 0) {
        return static_cast<pid_t>(pid);
      }
    }
  }
  char text[32] = {};
  const ssize_t n = ::pread(fd, text, sizeof(text) - 1, 0);
  return n > 0 ? static_cast<pid_t>(std::atol(text)) : 0;
}

}  // namespace

Try<int> lockWorkDir(const std::string& workDir, std::chrono::milliseconds timeout,
                     const std::function<void(pid_t)>& onWait) {
  const std::string path = paths::lockFile(workDir);
  const int fd = actors::fs::disk().openat(AT_FDCWD, path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Error(ErrorKind::IO, "Failed to open the lock file '" + path + "': " + std::strerror(errno));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  bool told = false;
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    if (error == EINTR) continue;
    if (error != EWOULDBLOCK) {
      ::close(fd);
      return Error(ErrorKind::IO, "Failed to lock '" + path + "': " + std::strerror(error));
    }
    // The kernel names the holder; an instant after its flock it may not
    // show yet, so a pid is awaited a moment (2 s), even past the timeout.
    // A holder no pid names (another tool's flock where /proc/locks cannot
    // match the file, as on btrfs) is said to be unknown after that.
    const pid_t holder = lockHolder(fd);
    const auto now = std::chrono::steady_clock::now();
    if ((holder > 0 && now >= deadline) || now >= deadline + std::chrono::seconds(2)) {
      ::close(fd);
      const std::string waited = timeout.count() > 0
                                     ? " (waited " + std::to_string(timeout.count() / 1000.0).substr(0, 4) + " s)"
                                     : "";
      const std::string who = holder > 0 ? "another provisioner (pid " + std::to_string(holder) + ")"
                                         : "another process (its pid is neither in /proc/locks nor in the file)";
      return Error(ErrorKind::Unavailable,
                   "Failed to lock the work dir '" + workDir + "': " + who + " holds it" + waited);
    }
    if (holder > 0 && !told && onWait) {
      onWait(holder);
      told = true;
    }
    // Polled: flock cannot wait with a timeout, and an alarm signal is not a
    // library's to take.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
  // Written over the last holder's pid, then cut to length only when that
  // one was longer: truncating to 0 freed the file's block every time (a
  // journal update, 0.3 ms of each command here). A reader in between
  // still finds this pid on the first line.
  const std::string self = std::to_string(::getpid()) + "\n";
  struct stat st {};
  auto& disk = actors::fs::disk();
  const ssize_t wrote = disk.pwrite(fd, self.data(), self.size(), 0);
  if (wrote >= 0 && wrote != static_cast<ssize_t>(self.size())) errno = EIO;  // short: no errno of its own
  if (wrote != static_cast<ssize_t>(self.size()) || ::fstat(fd, &st) != 0 ||
      (st.st_size != static_cast<off_t>(self.size()) && disk.ftruncate(fd, static_cast<off_t>(self.size())) != 0)) {
    ::close(fd);
    return Error(ErrorKind::IO, "Failed to write the lock file '" + path + "': " + std::strerror(errno));
  }
  return fd;
}

}  // namespace prov::provisioner
