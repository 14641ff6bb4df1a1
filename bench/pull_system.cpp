#include "bench/pull_system.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "bench/pull_process.hpp"

namespace prov::bench::pull {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kPackages = {"containerd", "umoci", "skopeo", "docker-registry", "e2fsprogs", "pigz"};
const char* kPolicy = "/usr/sbin/policy-rc.d";

bool installed(const std::string& package) {
  std::string output;
  if (tryRun({"dpkg-query", "-W", "-f=${db:Status-Abbrev}", package}, output) != 0) return false;
  return output.rfind("ii", 0) == 0;
}

// Mount points at or below `path` from /proc/self/mountinfo (octal escapes
// decoded), deepest first.
std::vector<std::string> mountsBelow(const fs::path& path) {
  const std::string prefix = fs::weakly_canonical(path).string();
  std::ifstream in("/proc/self/mountinfo");
  std::vector<std::string> found;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string id, parent, device, root, point;
    fields >> id >> parent >> device >> root >> point;
    std::string decoded;
    for (std::size_t i = 0; i < point.size(); ++i) {
      if (point[i] == '\\' && i + 3 < point.size()) {
        decoded += static_cast<char>(std::stoi(point.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        decoded += point[i];
      }
    }
    if (decoded == prefix || decoded.rfind(prefix + "/", 0) == 0) found.push_back(decoded);
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  return found;
}

// Loop devices whose backing file is `image`.
std::vector<std::string> loopsOf(const fs::path& image) {
  std::string output;
  if (tryRun({"losetup", "-j", image.string()}, output) != 0) return {};
  std::vector<std::string> loops;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    const auto colon = line.find(':');
    if (colon != std::string::npos && line.rfind("/dev/loop", 0) == 0) loops.push_back(line.substr(0, colon));
  }
  return loops;
}

}  // namespace

void ensurePackages(const std::vector<std::string>& extra) {
  std::vector<std::string> missing;
  for (const auto& p : kPackages) {
    if (!installed(p)) missing.push_back(p);
  }
  for (const auto& p : extra) {
    if (!installed(p)) missing.push_back(p);
  }
  if (missing.empty()) return;
  std::string names;
  for (const auto& p : missing) names += " " + p;
  std::printf("bench_pull: installing%s\n", names.c_str());
  std::fflush(stdout);
  const bool createdPolicy = !fs::exists(kPolicy);
  if (createdPolicy) {
    std::ofstream(kPolicy) << "#!/bin/sh\n# bench_pull: no service starts during its installs\nexit 101\n";
    fs::permissions(kPolicy, fs::perms(0755));
  }
  ::setenv("DEBIAN_FRONTEND", "noninteractive", 1);
  try {
    mustRun({"apt-get", "update", "-qq"});
    std::vector<std::string> install = {"apt-get", "install", "-y", "-qq", "--no-install-recommends"};
    install.insert(install.end(), missing.begin(), missing.end());
    mustRun(install);
  } catch (...) {
    if (createdPolicy) fs::remove(kPolicy);
    throw;
  }
  if (createdPolicy) fs::remove(kPolicy);
}

std::string packageVersions(const std::vector<std::string>& extra) {
  std::vector<std::string> packages = kPackages;
  packages.insert(packages.end(), extra.begin(), extra.end());
  std::string out;
  for (const auto& p : packages) {
    std::string version;
    if (tryRun({"dpkg-query", "-W", "-f=${Version}", p}, version) != 0) version = "missing";
    out += (out.empty() ? "" : ", ") + p + " " + version;
  }
  return out;
}

void unmountBelow(const fs::path& path) {
  for (const auto& point : mountsBelow(path)) {
    if (::umount2(point.c_str(), 0) != 0 && ::umount2(point.c_str(), MNT_DETACH) != 0) {
      std::fprintf(stderr, "bench_pull: Failed to unmount '%s': %s\n", point.c_str(), std::strerror(errno));
    }
  }
}

void removeTree(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(path, ec))) return;
  unmountBelow(path);
  fs::remove_all(path, ec);
  if (ec) throw std::runtime_error("Failed to remove '" + path.string() + "': " + ec.message());
}

ScratchFs::ScratchFs(const fs::path& dir, std::size_t mib, bool keep)
    : image_(dir / "scratch.img"), mount_(dir / "mnt"), keep_(keep) {
  // What a killed earlier run may have left.
  unmountBelow(mount_);
  for (const auto& loop : loopsOf(image_)) mustRun({"losetup", "-d", loop});
  fs::remove(image_);

  const off_t bytes = static_cast<off_t>(mib) << 20;
  const int fd = ::open(image_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("Failed to create '" + image_.string() + "': " + std::strerror(errno));
  const int rc = ::posix_fallocate(fd, 0, bytes);
  ::close(fd);
  if (rc != 0) {
    fs::remove(image_);
    throw std::runtime_error("Failed to allocate " + std::to_string(mib) + " MiB for '" + image_.string() +
                             "': " + std::strerror(rc));
  }
  std::string device = mustRun({"losetup", "--direct-io=on", "-f", "--show", image_.string()});
  device.erase(device.find_last_not_of(" \n") + 1);
  loop_ = device;
  fs::create_directories(mount_);
  try {
    makeAndMount();
  } catch (...) {
    tryRun({"losetup", "-d", loop_}, device);
    fs::remove(image_);
    throw;
  }
}

void ScratchFs::makeAndMount() {
  mustRun({"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", loop_});
  if (::mount(loop_.c_str(), mount_.c_str(), "ext4", 0, nullptr) != 0) {
    throw std::runtime_error("Failed to mount '" + loop_ + "' at '" + mount_.string() + "': " + std::strerror(errno));
  }
  mounted_ = true;
}

void ScratchFs::reset() {
  // Not lazily: mkfs under a file system still in use would corrupt the new one.
  for (const auto& point : mountsBelow(mount_)) {
    if (::umount2(point.c_str(), 0) != 0) {
      throw std::runtime_error("Failed to unmount '" + point + "': " + std::strerror(errno));
    }
  }
  mounted_ = false;
  makeAndMount();
}

ScratchFs::~ScratchFs() {
  if (keep_) {
    std::printf("bench_pull: kept %s mounted at %s (umount %s && losetup -d %s)\n", loop_.c_str(), mount_.c_str(),
                mount_.c_str(), loop_.c_str());
    return;
  }
  if (mounted_) unmountBelow(mount_);
  std::string output;
  int status = 1;
  try {
    status = tryRun({"losetup", "-d", loop_}, output);
  } catch (const std::exception& e) {  // a second signal while cleaning up
    output = e.what();
  }
  if (status != 0) std::fprintf(stderr, "bench_pull: Failed to detach '%s': %s\n", loop_.c_str(), output.c_str());
  std::error_code ec;
  fs::remove(image_, ec);
  fs::remove(mount_, ec);
}

}  // namespace prov::bench::pull
