#pragma once

// The blocking file-system steps of the image store (run on the blocking
// pool): committing a staged layer, and the recover and prune sweeps.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/error.hpp"

namespace prov::store {

using actors::Nothing;
using actors::Try;

// Gives each of `impliedDirs` (relative to `rootfs`) the owner, mode and
// times of the same directory in the nearest of `parentRootfses` (nearest
// first) that has it; stops looking at a layer that has something else
// there, and updates their entries in the record beside `rootfs`
// (layer_record.hpp). Then (with `sync`) syncfs.
Try<Nothing> settleImpliedDirs(const std::string& rootfs, const std::vector<std::string>& impliedDirs,
                               const std::vector<std::string>& parentRootfses, bool sync);

// settleImpliedDirs, notes the commit in `journal` (when not empty:
// noteCommit, durable with the layer), then renames `stagingDir` (holding
// rootfs/) to `layerDir`. A layer already there (committed by someone
// else) wins and the staging copy is removed.
Try<Nothing> commitLayer(const std::string& stagingDir, const std::string& rootfs,
                         const std::vector<std::string>& impliedDirs, const std::vector<std::string>& parentRootfses,
                         const std::string& layerDir, bool sync, const std::string& journal = "");

// A layer is extracted once per diff_id into its seed, layers/<diff hex>/,
// whatever chains it sits in (image_store.hpp says why and how). The
// directories it only implies (its tar has entries below them, not them)
// are left as the extraction made them, and listed in the `implied` file
// beside its rootfs/ (paths::impliedOf), one a line, empty when none.

// commitLayer for a seed: writes the `implied` file into `stagingDir`,
// then commits without settling anything.
Try<Nothing> commitSeed(const std::string& stagingDir, const std::string& rootfs,
                        const std::vector<std::string>& impliedDirs, const std::string& layerDir, bool sync,
                        const std::string& journal = "");

// What the `implied` file of the layer in `layerDir` lists. NotFound when
// it has none (a layer committed before session 15).
Try<std::vector<std::string>> readImplied(const std::string& layerDir);

// How the layers below a chain's layer (`parentRootfses`, nearest first)
// settle the directories it only implies: "" when they settle none of them
// (none has any of them: the seed serves as it is), else 16 hex digits of
// the SHA-256 of what each one takes (owner, mode and modification time,
// or nothing), which name the variant.
Try<std::string> settlementOf(const std::vector<std::string>& impliedDirs,
                              const std::vector<std::string>& parentRootfses);

// The tree at `from` again at `to` (made here; its parent must exist):
// each directory made anew with the same owner, mode, extended attributes
// and times, everything else (files, symlinks, devices, whiteouts)
// hard-linked. So a variant costs its directories on disk, not its files.
Try<Nothing> linkTree(const std::string& from, const std::string& to);

// Where a chain's layer whose seed is `seedId` (a layer id: "sha256:<hex>"
// or "sha256:<hex>-s") lives when the chain's layers below it are
// `parentRootfses` (nearest first): the seed itself when it implies no
// directory or the layers below settle none; else its variant
// "<seedId>-<settlementOf>", made when missing (linkTree of the seed in
// staging/, its record and implied file copied, the implied directories
// settled, then committed like a layer).
struct Placement {
  std::string id;     // the layer id the chain uses
  bool made = false;  // a variant committed by this call
};
Try<Placement> placeLayer(const std::string& storeDir, const std::string& seedId,
                          const std::vector<std::string>& parentRootfses, bool sync, const std::string& journal = "");

// The layers a store committed last (paths::recent), so that after a
// reboot the ones a crash may have caught half written to the disk are
// checked against their records. Linux writes dirty pages back within
// about 35 s (vm.dirty_expire_centisecs, the flusher's period, ext4's
// journal commit) and a commit syncs its layer besides (syncLayers): a
// layer committed five minutes before the last one is on the disk by any
// reasonable measure, so the journal keeps five minutes of commits.
inline constexpr std::int64_t kRecentCommitSeconds = 5 * 60;
struct RecentCommit {
  std::int64_t at = 0;  // unix seconds
  std::string bootId;   // /proc/sys/kernel/random/boot_id when it was committed
  std::string name;     // the layer's directory name
};
// This boot's id ("" when the kernel does not say).
std::string currentBootId();
// Adds `name` to `journal`, dropping the lines older than
// kRecentCommitSeconds. Not synced: the caller's sync covers it. Calls
// for one journal are serialized (commits run on several threads).
Try<Nothing> noteCommit(const std::string& journal, const std::string& name);
// What `journal` lists (empty when there is none; malformed lines are
// skipped).
std::vector<RecentCommit> readRecentCommits(const std::string& journal);
// Replaces `journal` with `commits`.
Try<Nothing> writeRecentCommits(const std::string& journal, const std::vector<RecentCommit>& commits);

// Bytes on disk of the tree at `root`: its entries' allocated blocks, a
// file with several hard links in the tree once (with `directoriesOnly`,
// its directories' alone). Does not follow symlinks or cross into other
// file systems.
Try<std::int64_t> diskUsage(const std::string& root, bool directoriesOnly = false);

// What content directory `rootfs` takes on disk, as its usage file
// (paths::usageOf) says; measured with diskUsage() and the file written
// the first time (not at commit: a pull does not pay for the walk), or when
// the file is unreadable. A variant's (placeLayer) files are its seed's, so
// its directories alone count. A file that cannot be written is logged; the
// figure is returned all the same.
Try<std::int64_t> contentBytes(const std::string& rootfs);

// contentBytes() of each of `rootfses`; one that cannot be measured (gone
// meanwhile, unreadable) is left out and logged.
std::map<std::string, std::int64_t> measureContent(const std::vector<std::string>& rootfses);

struct StoreContents {
  std::set<std::string> layers;    // layer ids ("sha256:<name>") in layers/
  std::set<std::string> unmarked;  // those of them without an `implied` file (from before session 15)
  std::set<std::string> retired;   // layer ids with a `retired` file: not in `layers`
  std::set<std::string> configs;   // file names in configs/
};

// Makes the store's directories, empties staging/ and gc/, and lists what
// layers/ and configs/ hold.
Try<StoreContents> recoverStoreDirs(const std::string& storeDir);

// Renames each path into gc/ (missing ones are skipped); returns the names
// made there.
Try<std::vector<std::string>> markForGc(const std::string& storeDir, const std::vector<std::string>& paths);

// Makes each of `dirs` and its missing parents.
Try<Nothing> makeDirectories(const std::vector<std::string>& dirs);

// The store directory `storeDir` made private to root (0700, a wider one
// narrowed: image content below it, setuid binaries and device nodes
// included, is out of other users' reach), then each of `dirs`, and its
// records-since file (layer_record.hpp) when it has none.
Try<Nothing> makeStoreDirectories(const std::string& storeDir, const std::vector<std::string>& dirs);

// Deletes everything in `dir` (which stays).
Try<Nothing> emptyDirectory(const std::string& dir);

// Deletes everything in gc/.
Try<Nothing> sweepGc(const std::string& storeDir);

}  // namespace prov::store
