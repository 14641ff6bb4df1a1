#pragma once

// A layer's record: what its tree held when it was committed, so that damage
// done to it later (a machine crash that left files empty, a hand in the
// store) is found instead of served. Blocking: run on the blocking pool.
//
// Per entry: the type, the permission bits, the owner, the size, and for a
// regular file an XXH3-64 hash of its bytes (a symlink's target, a device's
// number). The layer's bytes were verified against its diff_id on the way
// in; the record only has to notice a change, which a fast non-cryptographic
// hash does at memory speed while the bytes are written (tar_apply.cpp), so
// a pull pays no second pass. Not recorded: times, xattrs (the overlay
// opaque mark among them), hard-link structure (each link is checked as the
// file it names).
//
// The record is written beside the content (paths::recordOf) before the
// layer is committed, so a committed layer always has one, durable with it;
// settling the directories a layer only implies (layer_disk.hpp) updates
// their entries. A root hash over the entries tells a damaged record from a
// damaged tree. A layer committed before records existed has none: the first
// check records the tree as it then is (and says so), and checks it from
// then on; a layer committed since that lost its record is damaged.

#include <time.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "actors/error.hpp"

namespace prov::store {

using actors::Nothing;
using actors::Try;

struct RecordedEntry {
  std::uint32_t mode = 0;  // st_mode: type and permission bits
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t size = 0;  // regular file: its bytes; symlink: its target's length
  std::uint64_t hash = 0;  // regular file: XXH3-64 of its bytes
  std::uint64_t rdev = 0;  // device
  std::string target;      // symlink
};

// By path relative to the content root ("" is the root itself).
using LayerRecord = std::map<std::string, RecordedEntry>;

// XXH3-64 of a stream of bytes.
class ContentHash {
 public:
  ContentHash();
  ~ContentHash();
  ContentHash(const ContentHash&) = delete;
  ContentHash& operator=(const ContentHash&) = delete;
  void reset();
  void update(const void* data, std::size_t size);
  void zeros(std::uint64_t count);  // a hole of a sparse file
  std::uint64_t digest() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Writes `record` to `file` (atomically; durable with `sync`).
Try<Nothing> writeRecord(const std::string& file, const LayerRecord& record, bool sync);

// The record in `file`. NotFound when there is none; Corruption when it does
// not parse or its root hash does not match its entries.
Try<LayerRecord> readRecord(const std::string& file);

// The tree at `rootfs` as it stands (its files read and hashed).
Try<LayerRecord> recordTree(const std::string& rootfs);

// The entries for `paths` (relative to `rootfs`) in `record` taken from
// the disk; a path the disk does not have leaves the record.
Try<Nothing> restatEntries(const std::string& rootfs, const std::vector<std::string>& paths, LayerRecord& record);

// The entries for `paths` (relative to `rootfs`) taken again from the disk,
// in the record beside `rootfs`, if it has one; a path gone from the disk
// leaves the record. Written back without sync (the caller syncs).
Try<Nothing> refreshRecord(const std::string& rootfs, const std::vector<std::string>& paths);

// One difference between a tree and its record.
struct Damage {
  std::string path;  // "/etc/passwd"; "/" the root
  std::string what;  // "missing", "added", "content differs", "size 0, recorded 1024", ...
};

// What checkContent() found in one content directory.
struct ContentCheck {
  std::string rootfs;
  bool adopted = false;        // it had no record: the tree was recorded as it is, not checked
  bool gone = false;           // it was removed (image GC) while it was checked
  std::uint64_t entries = 0;   // entries checked
  std::uint64_t bytes = 0;     // file bytes read and hashed
  std::vector<Damage> damage;  // by path; empty: it matches its record
  std::string error;           // the check could not be made (the record is damaged, a read failed)
  bool ok() const { return damage.empty() && error.empty(); }
};

// The time from which every content directory of the store at `storeDir`
// was committed with a record: the modification time of its
// `records-since` file, which markRecordsSince() makes when there is none
// (makeStoreDirectories calls it, before the store's first commit).
// Corruption when the file is gone.
Try<timespec> recordsSince(const std::string& storeDir);
Try<Nothing> markRecordsSince(const std::string& storeDir);

// Checks the tree at `rootfs` against the record beside it. Without one:
// a tree made before `since` (its root's ctime: when its entries were
// made) is from before records, and is recorded as it is (adopted); a
// later one lost its record, which is damage (`error`). A directory that
// is not there is an error too, unless it went during the check (`gone`).
ContentCheck checkContent(const std::string& rootfs, const timespec& since);

}  // namespace prov::store
