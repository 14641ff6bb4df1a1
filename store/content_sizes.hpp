#pragma once

// What both stores do with their content directories. ContentSizes: the
// bytes on disk of a store's content directories (layer or AppC image
// rootfses), for Store::usage(): each read from its usage file, or
// measured and the file written (contentBytes), the first time it is asked
// for, then kept. Both stores use it. Owned by one store process and used
// on its strand only.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/async.hpp"
#include "actors/defer.hpp"
#include "actors/future.hpp"
#include "store/layer_disk.hpp"
#include "store/layer_record.hpp"
#include "store/store.hpp"

namespace prov::store {

class ContentSizes {
 public:
  // `usage` with the bytes of each of `rootfses`: the known ones at once,
  // the others read or measured on the blocking pool, then kept (and
  // listed) when `present` still says they are in the store, on `pid`'s
  // strand. One that cannot be measured (logged by measureContent) counts
  // as 0 from then on, in this process: it is not walked at every check.
  template <typename P>
  actors::Future<StoreUsage> fill(actors::Runtime& runtime, const actors::PID<P>& pid, StoreUsage usage,
                                  const std::vector<std::string>& rootfses,
                                  std::function<bool(const std::string&)> present) {
    std::vector<std::string> unknown;
    for (const auto& rootfs : rootfses) {
      if (auto known = bytes_.find(rootfs); known != bytes_.end()) {
        usage.bytes[rootfs] = known->second;
      } else {
        unknown.push_back(rootfs);
      }
    }
    if (unknown.empty()) return usage;
    return actors::async(runtime, [unknown] { return measureContent(unknown); })
        .then(actors::defer(
            pid, [this, usage, present, unknown](const std::map<std::string, std::int64_t>& measured) mutable {
              for (const auto& rootfs : unknown) {
                if (!present(rootfs)) continue;  // removed meanwhile
                auto found = measured.find(rootfs);
                const std::int64_t bytes = found == measured.end() ? 0 : found->second;
                bytes_[rootfs] = bytes;
                usage.bytes[rootfs] = bytes;
              }
              return usage;
            }));
  }

  void forget(const std::string& rootfs) { bytes_.erase(rootfs); }

 private:
  std::map<std::string, std::int64_t> bytes_;  // rootfs -> bytes on disk
};

// Store::verify() for a store whose `index` maps keys to StoredImages and
// whose `infoOf` gives an image's content: each content directory of the
// images asked for checked once, on the blocking pool. Then, on `pid`'s
// strand, one that is not whole and that no image of `index` (the store's
// own, read there) lists any more (image GC removed them meanwhile) is
// reported gone; one an image still lists is damaged, missing or not.
template <typename P, typename Index, typename InfoOf>
actors::Future<StoreCheck> checkImages(actors::Runtime& runtime, const actors::PID<P>& pid,
                                       const std::string& directory, const Index& index,
                                       const std::vector<std::string>& keys, InfoOf infoOf) {
  StoreCheck check;
  check.directory = directory;
  std::set<std::string> dirs;
  for (const auto& [key, image] : index) {
    if (!keys.empty() && std::find(keys.begin(), keys.end(), key) == keys.end()) continue;
    check.images.push_back(image);
    auto content = infoOf(image).layers;
    dirs.insert(content.begin(), content.end());
    check.contentOf[key] = std::move(content);
  }
  return actors::async(runtime,
                       [check = std::move(check), dirs = std::move(dirs)]() mutable -> actors::Try<StoreCheck> {
                         auto since = recordsSince(check.directory);
                         if (since.isError()) return since.error();
                         for (const auto& dir : dirs) check.checks[dir] = checkContent(dir, *since);
                         return check;
                       })
      .then(actors::defer(pid, [&index, infoOf](StoreCheck checked) {
        std::set<std::string> listed;
        for (const auto& [key, image] : index) {
          for (auto& dir : infoOf(image).layers) listed.insert(std::move(dir));
        }
        for (auto& [dir, result] : checked.checks) {
          if (result.ok() || listed.count(dir) > 0) continue;
          result = ContentCheck{};
          result.rootfs = dir;
          result.gone = true;
        }
        return checked;
      }));
}

// The keys among `keys` that `index` (a map by key) holds.
template <typename Index>
std::vector<std::string> keysIn(const Index& index, const std::vector<std::string>& keys) {
  std::vector<std::string> held;
  for (const auto& key : keys) {
    if (index.count(key) > 0) held.push_back(key);
  }
  return held;
}

}  // namespace prov::store
