#pragma once

// Applying one layer (store form) onto a rootfs directory, for the copy
// backend. Blocking; run on the blocking pool.
//
// A layer is applied in three steps so that file contents can be copied in
// parallel while the tree's shape is decided in one ordered walk:
//   1. prepareLayer walks the layer and shapes the rootfs: whiteouts (0/0
//      character devices) remove the name below; an opaque directory
//      (trusted.overlay.opaque=y) replaces the directory below; a path whose
//      type changes is removed first, so nothing is written through a
//      symlink a lower layer left; directories, symlinks, devices and fifos
//      are made, and each regular file is listed as a CopyJob (a second name
//      of a file hardlinked inside the layer as a LinkJob). Every operation
//      is relative to a directory fd opened with O_NOFOLLOW; the directories
//      the jobs will write into are real directories this walk made or
//      checked.
//   2. copyFile creates a listed file (O_EXCL, O_NOFOLLOW), fills it
//      (reflink, else copy_file_range, keeping holes of sparse files) and
//      sets owner, mode (setuid after chown), xattrs and times. Jobs are
//      independent: run them in parallel.
//   3. finishLayer makes the hardlinks, then sets the directories' owner,
//      mode, xattrs and times, deepest first, once their contents are in
//      place.
// Extended attributes in the trusted.overlay namespace are not copied.

#include <sys/stat.h>

#include <atomic>
#include <string>
#include <vector>

#include "actors/error.hpp"

namespace prov::backend::copy {

using actors::Nothing;
using actors::Try;

struct CopyJob {
  std::string source;
  std::string target;
  struct stat st {};
};

struct LinkJob {
  std::string existing;  // the first name, a CopyJob's target
  std::string target;
};

struct DirectoryFixup {
  std::string source;
  std::string target;
  struct stat st {};
};

struct LayerPlan {
  std::vector<CopyJob> files;
  std::vector<LinkJob> links;
  std::vector<DirectoryFixup> directories;  // in walk order (parents first)
};

Try<LayerPlan> prepareLayer(const std::string& layer, const std::string& rootfs);

// `reflink` is shared by the jobs of one provision: cleared once the file
// system refuses a clone, so later files go straight to copy_file_range.
Try<Nothing> copyFile(const CopyJob& job, std::atomic<bool>& reflink);

Try<Nothing> finishLayer(const LayerPlan& plan);

}  // namespace prov::backend::copy
