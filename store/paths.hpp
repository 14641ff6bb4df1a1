#pragma once

// The on-disk layout of the image stores, drawn once; nothing else puts store
// paths together or takes them apart.
//
// The Docker/OCI store (store/image_store.hpp):
//
//   <store>/                         e.g. <work_dir>/store/docker
//     staging/<random>/rootfs/       layers being extracted; emptied by recover()
//     layers/<name>/                 a committed layer, named by its layer id ("sha256:<name>"):
//       <diff hex>                   a seed (from session 15): the extraction of one diff_id, shared
//                                    by every chain it sits in; the directories it only implies
//                                    are left as extracted
//       <diff hex>-s[<n>]            a seed whose own name a layer from before session 15, or a
//                                    retired copy, holds
//       <seed>-<16 hex>              a variant: the seed's tree with the directories it implies
//                                    settled as one chain's layers below it have them; its
//                                    directories are its own, its files hard links to the seed's
//       <chain hex>                  a layer committed before session 15, named by its chain id
//                                    (its implied directories settled against its parents); still
//                                    served to that chain, never shared with another
//     layers/<name>/rootfs/          the layer's tree, in overlay whiteout form
//     layers/<name>/implied          the directories it only implies, one a line (session 15 on;
//                                    empty when none)
//     layers/<name>/retired          it is damaged and a container mounts it: no get hands it out
//                                    again; prune removes it once none does (session 15)
//     layers/<name>/usage            rootfs/'s size on disk, bytes (from session 13):
//                                    measured and written the first time it is asked for
//     layers/<name>/record           what rootfs/ held when it was committed (session 14;
//                                    a layer from before gets one at its first check)
//     configs/<config hex>           an image config, as fetched
//     images                         the image index (StoredImages), replaced atomically
//     records-since                  every layer committed after its mtime has a record (session 14)
//     recent                         the layers committed last: "<unix seconds> <boot id> <name>"
//                                    a line, the last 5 minutes' (session 14; checked after a reboot)
//     gc/<random>/                   marked for deletion by prune(); swept in the background
//
// The AppC store (store/appc_store.hpp):
//
//   <store>/                         e.g. <work_dir>/store/appc
//     images/sha512-<hex>/manifest   the image's manifest, as in its ACI
//     images/sha512-<hex>/rootfs/    its root file system
//     images/sha512-<hex>/usage      rootfs/'s size on disk, as a layer's
//     images/sha512-<hex>/record     what rootfs/ held when it was committed, as a layer's
//     images/sha512-<hex>/implied    the directories rootfs/ only implies, one a line,
//                                    until they are settled against its dependencies
//     staging/<random>/              fetches and extractions in progress; emptied by recover()
//     index/images                   which image each asked-for name and labels resolved to
//     gc/<random>/                   marked for deletion by prune()

#include <string>
#include <string_view>
#include <vector>

#include "actors/random.hpp"

namespace prov::store::paths {

// "sha256:<hex>" -> "<hex>"; anything without an algorithm as it is.
inline std::string hexOf(std::string_view digest) {
  const auto colon = digest.find(':');
  return std::string(colon == std::string_view::npos ? digest : digest.substr(colon + 1));
}

inline std::string staging(const std::string& store) { return store + "/staging"; }
// staging/<random>/rootfs: where a staged layer is extracted.
inline std::string stagedRootfs(const std::string& stagingDir) { return stagingDir + "/rootfs"; }
inline std::string layers(const std::string& store) { return store + "/layers"; }
inline std::string layer(const std::string& store, std::string_view layerId) {
  return layers(store) + "/" + hexOf(layerId);
}
inline std::string layerRootfs(const std::string& store, std::string_view layerId) {
  return layer(store, layerId) + "/rootfs";
}
// The seed a layer id is made from: a variant's seed ("sha256:<hex>-<16
// hex>" -> "sha256:<hex>", "sha256:<hex>-s2-<16 hex>" -> "sha256:<hex>-s2");
// a seed ("-s<n>" names one too) or a layer from before session 15 is its
// own.
inline std::string seedOf(std::string_view layerId) {
  const auto dash = layerId.rfind('-');
  if (dash == std::string_view::npos || layerId.substr(dash + 1).starts_with("s")) return std::string(layerId);
  return std::string(layerId.substr(0, dash));
}
// The names a seed of diff_id `diffId` ("sha256:<hex>") may take, the
// `n`th: "sha256:<hex>", then "-s", "-s2", ...
inline std::string seedName(std::string_view diffId, int n) {
  return std::string(diffId) + (n == 0 ? "" : n == 1 ? "-s" : "-s" + std::to_string(n));
}
// The file that marks a layer retired.
inline std::string retiredIn(const std::string& layerDir) { return layerDir + "/retired"; }
inline std::string configs(const std::string& store) { return store + "/configs"; }
inline std::string config(const std::string& store, std::string_view digest) {
  return configs(store) + "/" + hexOf(digest);
}
// Acceptances by the signature policy (store/trust.hpp).
inline std::string trustRecords(const std::string& store) { return store + "/trust"; }
inline std::string imagesFile(const std::string& store) { return store + "/images"; }
inline std::string recent(const std::string& store) { return store + "/recent"; }
inline std::string gc(const std::string& store) { return store + "/gc"; }
// The directories a store has from its creation on.
inline std::vector<std::string> directories(const std::string& store) {
  return {staging(store), layers(store), configs(store), gc(store)};
}
// The file beside a content directory (a layer's or an AppC image's
// rootfs/) that holds its size on disk in bytes, in decimal.
inline std::string usageOf(std::string_view rootfs) {
  return std::string(rootfs.substr(0, rootfs.rfind('/'))) + "/usage";
}
// The file beside a layer's rootfs/ that lists the directories it only
// implies (store/layer_disk.hpp).
inline std::string impliedOf(std::string_view rootfs) {
  return std::string(rootfs.substr(0, rootfs.rfind('/'))) + "/implied";
}
// The file beside a content directory that records what it held when it
// was committed (store/layer_record.hpp).
inline std::string recordOf(std::string_view rootfs) {
  return std::string(rootfs.substr(0, rootfs.rfind('/'))) + "/record";
}
// <dir>/<random name>: a new entry's path under staging/ or gc/.
inline std::string randomChild(const std::string& dir) { return dir + "/" + actors::randomName(); }

// "<store>/layers/<name>" -> "sha256:<name>" (a layer id).
inline std::string layerIdOf(std::string_view layerDir) {
  return "sha256:" + std::string(layerDir.substr(layerDir.rfind('/') + 1));
}
// ".../<name>" -> "<name>".
inline std::string baseName(std::string_view path) { return std::string(path.substr(path.rfind('/') + 1)); }

namespace appc {

// An image's directory holds the same whether staged or stored.
inline std::string rootfsIn(const std::string& imageDir) { return imageDir + "/rootfs"; }
inline std::string manifestIn(const std::string& imageDir) { return imageDir + "/manifest"; }
inline std::string impliedIn(const std::string& imageDir) { return imageDir + "/implied"; }

inline std::string images(const std::string& store) { return store + "/images"; }
inline std::string image(const std::string& store, const std::string& id) { return images(store) + "/" + id; }
inline std::string rootfs(const std::string& store, const std::string& id) { return rootfsIn(image(store, id)); }
inline std::string manifest(const std::string& store, const std::string& id) { return manifestIn(image(store, id)); }
inline std::string implied(const std::string& store, const std::string& id) { return impliedIn(image(store, id)); }
inline std::string index(const std::string& store) { return store + "/index"; }
inline std::vector<std::string> directories(const std::string& store) {
  return {images(store), staging(store), gc(store), index(store)};
}

}  // namespace appc

}  // namespace prov::store::paths
