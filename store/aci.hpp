#pragma once

// Reading an ACI (an AppC image archive): a tar, plain or compressed with
// gzip, bzip2, xz or zstd (libarchive tells which), holding `manifest` and
// `rootfs/`. Blocking: run it on the blocking pool.

#include <atomic>
#include <string>
#include <vector>

#include "messages/appc.pb.h"
#include "store/tar_apply.hpp"

namespace prov::store {

struct AciContents {
  std::string id;            // "sha512-" + hex sha512 of the uncompressed tar
  std::string manifestJson;  // as in the archive
  messages::AppcManifest manifest;
  std::uint64_t entries = 0;
  std::vector<std::string> impliedDirs;  // under rootfs/, to settle against the dependencies
};

// Extracts the ACI at `path` into `root` (an empty directory: it receives
// what is under rootfs/), with the same rules as a Docker layer (no entry
// leaves the root, no write through a symlink, the limits) and no
// whiteouts. Errors name `what` and the cause: Corruption for data that does
// not decompress or is not a tar, InvalidArgument for an entry that escapes
// or sits beside manifest and rootfs/, for a missing rootfs/ or manifest,
// or a manifest the AppC spec rejects. On error `root` holds a partial tree:
// the caller removes it. Once `*cancel` is true the read stops (Cancelled).
Try<AciContents> extractAci(const std::string& path, const std::string& root, const std::string& what,
                            const ExtractLimits& limits, const std::atomic<bool>* cancel = nullptr);

}  // namespace prov::store
