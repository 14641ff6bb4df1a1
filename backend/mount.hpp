#pragma once

// Mount-table and kernel-support helpers for the backends. Blocking.

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "actors/error.hpp"

namespace prov::backend::mount {

using actors::Error;
using actors::Nothing;
using actors::Try;

struct MountInfo {
  int id = 0;
  int parent = 0;
  std::string root;
  std::string target;  // mount point, unescaped
  std::string fsType;
  std::string source;
  std::string propagation;  // optional fields, e.g. "shared:5 master:1"
};

// Parses /proc/self/mountinfo (octal escapes such as \040 are decoded).
Try<std::vector<MountInfo>> table();
Try<std::vector<MountInfo>> parseTable(const std::string& text);

// True when `path` (made absolute and canonical) is a mount point.
Try<bool> isMountPoint(const std::string& path);

// Lazy unmount (MNT_DETACH) of `path` and everything mounted below it.
Try<Nothing> unmountLazily(const std::string& path);

// Makes the mount at `path` a slave of its peers and shared again, as Mesos
// does for rootfs mounts (MS_SLAVE, then MS_SHARED).
Try<Nothing> makeSharedSlave(const std::string& path);

// /proc/filesystems lists `fsType` (for overlay, "overlay" or "overlayfs").
bool kernelSupports(const std::string& fsType);

// The file-system magic of the file system holding `path` (statfs).
Try<long> fileSystemType(const std::string& path);

// Whether readdir on a directory of `path`'s file system reports entry
// types (overlayfs needs d_type): yes when an entry of `path` has its type
// reported; otherwise creates and removes a probe directory inside `path`.
Try<bool> supportsDType(const std::string& path);

// A detached copy of the mount a directory is on, taken at that directory
// (open_tree(2) with OPEN_TREE_CLONE, Linux 5.2): nothing is ever mounted
// on it, it is in no mount table, and it goes with its descriptor.
//
// Why: overlayfs takes a private clone of the mount each of its layers is
// reached through (clone_private_mount), and the kernel first looks at
// every mount below that one. Through the live work dir that is one mount
// per rootfs, each walked up to the file system's root: an overlay mount
// beside 10,000 rootfses took 23 ms of kernel time here, against 0.3 ms
// beside none. Through the copy there is nothing to look at. Paths through
// it read /proc/self/fd/N/..., and mountinfo shows them so.
// statx(2) of `path` as DetachedView::through wants it: links followed,
// automounts not, with its type, inode and mount id (Linux 5.8; older
// kernels leave STATX_MNT_ID out of stx_mask). False when statx fails.
bool statForView(const std::string& path, struct ::statx* out);

class DetachedView {
 public:
  // Unsupported when the kernel has no open_tree (Linux 5.2) or reports
  // no mount ids (5.8); IO when `root` cannot be opened.
  static Try<std::unique_ptr<DetachedView>> open(const std::string& root);
  ~DetachedView();
  DetachedView(const DetachedView&) = delete;
  DetachedView& operator=(const DetachedView&) = delete;

  // `path` through the copy when it is below the root, on the root's own
  // mount (not on a mount below it, which the copy does not hold, even a
  // bind of the same directory with other flags), and the very same file
  // on the copy (same device and inode, and no symbolic link led off the
  // copy); else `path` itself. Two statx calls.
  std::string through(const std::string& path) const;
  // The same, given `real`, what statForView said of `path` (for a caller
  // that needs it anyway): one statx call.
  std::string through(const std::string& path, const struct ::statx& real) const;

 private:
  DetachedView(std::string root, std::uint64_t rootMount, std::uint64_t copyMount, int fd);
  bool below(const std::string& path) const;  // strictly below root_

  std::string root_;         // as given, without a trailing '/'
  std::uint64_t rootMount_;  // mount ids (statx) of the root's mount and of the copy
  std::uint64_t copyMount_;
  int fd_;
  std::string prefix_;  // /proc/self/fd/<fd_>
};

}  // namespace prov::backend::mount
