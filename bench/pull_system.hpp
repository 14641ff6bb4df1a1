#pragma once

// The machine-level set-up of bench_pull: the Debian packages of the peers,
// and the scratch ext4 file system on a loop device that every tool writes
// to.

#include <filesystem>
#include <string>
#include <vector>

namespace prov::bench::pull {

// Installs, with apt-get, whichever of containerd, umoci, skopeo,
// docker-registry, e2fsprogs, pigz and `extra` is missing (prints nothing
// when none is). A policy-rc.d that forbids starting services is in place
// during the install (containerd's and nginx's packages would start their
// system daemons; the benchmarks never use them). Throws when apt-get fails.
void ensurePackages(const std::vector<std::string>& extra = {});

// "containerd 1.6.20~ds1-1+deb12u3, ..." from dpkg-query, `extra` too.
std::string packageVersions(const std::vector<std::string>& extra = {});

// A journaled ext4 on a loop device (direct I/O) over <dir>/scratch.img
// (allocated up front, so the host file system allocates nothing during a
// run), mounted at <dir>/mnt. reset() makes it anew (unmount, mkfs with
// inode tables and journal written at once, so no lazy init runs in the
// background, mount): every timed run starts on the same empty file system
// instead of one where another tool just deleted 100,000 files. The
// destructor unmounts anything below the mount point, the mount itself,
// detaches the loop device and removes the image file (unless `keep`).
// Creating it first cleans up what a killed earlier run left at the same
// paths. Throws std::runtime_error on failure.
class ScratchFs {
 public:
  ScratchFs(const std::filesystem::path& dir, std::size_t mib, bool keep);
  ~ScratchFs();
  ScratchFs(const ScratchFs&) = delete;
  ScratchFs& operator=(const ScratchFs&) = delete;

  // Unmounts everything, makes a new empty ext4 and mounts it again.
  void reset();

  const std::filesystem::path& mountPoint() const { return mount_; }
  const std::string& loopDevice() const { return loop_; }

 private:
  void makeAndMount();

  std::filesystem::path image_;
  std::filesystem::path mount_;
  std::string loop_;
  bool mounted_ = false;
  bool keep_ = false;
};

// Unmounts every mount at or below `path`, deepest first; lazily, with a
// message, when one is busy.
void unmountBelow(const std::filesystem::path& path);

// Removes `path` and everything below it after unmounting what is mounted
// there; quiet when it does not exist.
void removeTree(const std::filesystem::path& path);

}  // namespace prov::bench::pull
