#pragma once

// Mount-table and kernel-support helpers for the backends. Blocking.

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

}  // namespace prov::backend::mount
