#pragma once

// The on-disk layout of an image store, drawn once; nothing else puts store
// paths together.
//
//   <store>/                         e.g. <work_dir>/store/docker
//     staging/<random>/rootfs/       layers being extracted; emptied by recover()
//     layers/<chain hex>/rootfs/     a committed layer, in overlay whiteout form;
//                                    named by chain id (it settles the directories
//                                    it only implies against its parents)
//     configs/<config hex>           an image config, as fetched
//     images                         the image index (StoredImages), replaced atomically
//     gc/<random>/                   marked for deletion by prune(); swept in the background

#include <string>
#include <string_view>

namespace prov::store::paths {

// "sha256:<hex>" -> "<hex>"; anything without an algorithm as it is.
inline std::string hexOf(std::string_view digest) {
  const auto colon = digest.find(':');
  return std::string(colon == std::string_view::npos ? digest : digest.substr(colon + 1));
}

inline std::string staging(const std::string& store) { return store + "/staging"; }
inline std::string layers(const std::string& store) { return store + "/layers"; }
inline std::string layer(const std::string& store, std::string_view chainId) {
  return layers(store) + "/" + hexOf(chainId);
}
inline std::string layerRootfs(const std::string& store, std::string_view chainId) {
  return layer(store, chainId) + "/rootfs";
}
inline std::string configs(const std::string& store) { return store + "/configs"; }
inline std::string config(const std::string& store, std::string_view digest) {
  return configs(store) + "/" + hexOf(digest);
}
inline std::string imagesFile(const std::string& store) { return store + "/images"; }
inline std::string gc(const std::string& store) { return store + "/gc"; }

}  // namespace prov::store::paths
