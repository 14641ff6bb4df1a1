#pragma once

// Applies one layer's tar stream to a fresh directory (the layer's root),
// securely and in the store's form. Blocking: run it on the blocking pool.
//
// - Every path stays inside the root: an entry with an absolute path or a
//   `..` component is rejected; parents are opened with openat2
//   (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), or a walk with O_NOFOLLOW at
//   each step, so no write goes through a symlink; a hardlink must name an
//   entry of this layer. Each rejection is InvalidArgument naming the entry.
// - Whiteouts become overlay whiteouts: `.wh.name` a 0/0 character device
//   (unless this layer itself has `name`), `.wh..wh..opq` the xattr
//   `trusted.overlay.opaque=y` on its directory. The bottom layer has nothing
//   below it, so its whiteouts are dropped. A whiteout naming `.`, `..` or
//   nothing is rejected. `trusted.overlay.*` xattrs in the tar are dropped (a
//   layer must not forge overlay metadata).
// - Kept: owner, mode (set after chown, so setuid/setgid survive), xattrs
//   (PAX SCHILY.xattr), hardlinks, symlinks, devices, fifos, sparse files,
//   mtimes (directories last), long names. A later entry for the same path
//   replaces an earlier one; a directory entry over a directory only updates
//   its metadata.
// - Directories the layer only implies (it has `a/b/c` but no `a/b`) are made
//   0755 root:root and listed in the result, to be settled against the
//   layers below when the layer is committed.
// - Limits: entries, path bytes, xattr bytes per entry; the source enforces
//   the byte limit. Over a limit: ResourceExhausted (entries) or
//   InvalidArgument (a path or header too long).
// - The result records every entry of the tree (ApplyResult::record).
//
// On error the root holds a partial tree: the caller removes it.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "actors/error.hpp"
#include "store/layer_record.hpp"

namespace prov::store {

using actors::Error;
using actors::ErrorKind;
using actors::Nothing;
using actors::Try;

// The xattr that marks a directory opaque in a layer (its lower layers'
// contents hidden), as overlayfs reads it; stored layers keep it so.
inline constexpr const char* kOpaqueXattr = "trusted.overlay.opaque";

// What an image may unpack to. The first four bound one layer (or ACI),
// the last two one image: its layers together (layers it shares with an
// image already stored count for that one). The command line's flags carry
// the names in comments.
struct ExtractLimits {
  std::uint64_t maxLayerBytes = 64ull << 30;  // uncompressed tar bytes (--max_layer_bytes); also the
                                              // compressed bytes of a blob that declares no size
  std::uint64_t maxEntries = 4'000'000;       // --max_layer_entries
  std::size_t maxPathBytes = 4096;
  std::size_t maxXattrBytes = 1 << 20;         // names and values of one entry
  std::uint64_t maxImageBytes = 128ull << 30;  // uncompressed, all layers (--max_image_bytes)
  std::uint32_t maxImageLayers = 128;          // layers or ACI dependencies (--max_image_layers)
};

// Where the tar bytes come from: read() returns the next piece (valid until
// the next call), empty at the end, or the source's error.
class TarSource {
 public:
  virtual ~TarSource() = default;
  virtual Try<std::string_view> read() = 0;
};

struct ApplyOptions {
  std::string what;  // names the layer in messages: "layer 'sha256:…'"
  bool bottomLayer = false;
  ExtractLimits limits;
  // Only the entries under this directory of the tar make the tree, with
  // the directory stripped ("rootfs": an AppC image). An entry outside it is
  // rejected, except a regular file named in `capture`, whose bytes (at
  // most `captureLimit`, else ResourceExhausted) go to ApplyResult::captured.
  // A hardlink must stay inside the subtree too.
  std::string subtree;
  std::set<std::string> capture;
  std::size_t captureLimit = 1 << 20;
  // False: `.wh.` names are ordinary files (formats without whiteouts).
  bool whiteouts = true;
};

struct ApplyResult {
  std::uint64_t entries = 0;
  std::vector<std::string> impliedDirs;         // relative paths, parents first
  std::map<std::string, std::string> captured;  // see ApplyOptions::capture
  bool sawSubtree = false;                      // an entry was the subtree or inside it
  // What the tree holds (store/layer_record.hpp), made as it is written:
  // the files' bytes hashed on their way to the disk. Implied directories
  // as made here, before they are settled.
  LayerRecord record;
};

// Applies the tar `source` yields to `root` (an existing, empty directory).
// A source error is returned as it is.
Try<ApplyResult> applyTar(const std::string& root, TarSource& source, const ApplyOptions& options);

}  // namespace prov::store
