#pragma once

// The role every image store plays (Mesos's Store): the provisioner keeps one
// per provider ("docker" for Docker/OCI images from registries and local
// sources, "appc" for AppC images) and never looks past this interface.
// Implementations are facades owning an actor; every call may come from any
// thread and returns a future.
//
// recover(): makes the store consistent with what is on disk (staging
//   emptied, an interrupted gc sweep finished, the index loaded and cut to
//   the images whose content is complete). Call once, before anything else.
// get(image): the image's content, fetched when it is not stored (or when
//   `image.cached()` is false), as ImageInfo. Concurrent gets of one image
//   share one fetch; discarding every caller stops it and leaves nothing.
//   Unsupported for an image of another provider.
// prune(excluded, activePaths): forgets every image but those in `excluded`
//   (other providers' images there are ignored) and those whose every layer
//   directory is in `activePaths`; then removes all content that no
//   remaining image, no path in `activePaths` and no running get uses.
// images(): what the index holds now.
// usage(): what its content takes on disk (StoreUsage), for image GC and
//   `images`. Each content directory is measured once, the first time it
//   is asked for (not during its pull), and the figure written beside it;
//   one that cannot be measured is logged and left out (counts as 0).
// remove(keys, activePaths): forgets the images with these keys (unknown
//   ones are ignored), then removes content as prune() does: all that no
//   remaining image, no path in `activePaths` and no running get uses.
// keyOf(image): the key the store indexes `image` under; an error for an
//   image of another provider.
// touch(keys): the images with these keys were in use until now (a
//   container made from them went): their last use moves (unknown keys are
//   ignored).
// swept(): READY once what prune() and remove() moved into gc/ is deleted.
// quiesce(): READY once the work the store runs in the background has
//   ended: gc/ sweeps (swept()), and writes of its index (the last uses
//   touch() moved) asked for before the call. What it has done is then on
//   disk: a host that exits without stopping the store waits for it first.
// discard(contentDirs): these content directories (damaged ones, found by
//   verify) go to gc/ and leave the store; the images made of them stay
//   in the index, and the next get of each fetches what is missing again.
//   Directories the store does not hold are ignored. The caller makes sure
//   no container uses them.
// retire(contentDirs): these content directories (damaged ones a
//   container mounts) leave the store for every later get, which fetches
//   them again under new names, but stay on disk for the containers until
//   a prune finds none using them. A retired variant takes its seed with it
//   (their names go together). Directories the store does not hold are
//   ignored. Unsupported where discard is.
// lookUp(image): the manifest digest the image's source has for it now
//   (what a get with `cached` false would pull), without storing anything.
// verify(keys): checks the content of the images with these keys (every
//   image when `keys` is empty; unknown keys are ignored) against the
//   records made when it was committed (store/layer_record.hpp), each
//   content directory once, on the blocking pool.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/error.hpp"
#include "actors/future.hpp"
#include "messages/image.pb.h"
#include "store/layer_record.hpp"

namespace prov::store {

using actors::Future;
using actors::Nothing;

inline constexpr const char* kDockerProvider = "docker";
inline constexpr const char* kAppcProvider = "appc";
// Every provider, in the order stores are made, listed and recovered.
inline constexpr const char* kProviders[] = {kDockerProvider, kAppcProvider};

// "appc" for AppC images, "docker" for every other type.
inline std::string providerOf(const messages::Image& image) {
  return image.type() == messages::Image::APPC ? kAppcProvider : kDockerProvider;
}

// What a store hands out for an image: enough to assemble a rootfs.
struct ImageInfo {
  messages::StoredImage image;
  std::vector<std::string> layers;  // layer rootfs directories, base first
  std::string configPath;           // the config file a container uses ("" when none: schema 1)
  // Set when this call pulled the image (not served from the store): its
  // layers' compressed size as the manifest declares, and what was fetched.
  bool fetched = false;
  std::int64_t imageBytes = 0;
  std::int64_t fetchedBytes = 0;
};

// How the signature policy let an image in (store/trust.hpp).
struct Verification {
  std::string policyFile;
  std::string policyDigest;             // of the policy, its key files and registries.d, as checked
  std::string scope;                    // "default", "transports.docker[\"host/repo\"]"
  std::vector<std::string> by;          // per requirement: "insecureAcceptAnything", "signedBy key <FPR>"
  std::vector<std::string> signatures;  // sha256 of each signature that was accepted
  std::int64_t at = 0;                  // unix seconds of the check
};

// What a store's content takes on disk (Store::usage()).
struct StoreUsage {
  std::string directory;  // the store's
  std::vector<messages::StoredImage> images;
  // By image key: the content directories (rootfses, as ImageInfo::layers)
  // it is made of, base first.
  std::map<std::string, std::vector<std::string>> contentOf;
  // Bytes on disk (allocated blocks, a hard-linked file once) of every
  // content directory the store holds, by path, images' or not.
  std::map<std::string, std::int64_t> bytes;
  // By image key: the newest acceptance recorded for the image as stored,
  // under the store's signature policy as it is now (any policy when the
  // store has none); absent when there is none (never checked, or a store
  // from before policies).
  std::map<std::string, Verification> verified;
};

// What Store::verify() found.
struct StoreCheck {
  std::string directory;                      // the store's
  std::vector<messages::StoredImage> images;  // those checked
  // By image key: its content directories, base first (as ImageInfo::layers).
  std::map<std::string, std::vector<std::string>> contentOf;
  std::map<std::string, ContentCheck> checks;  // by content directory
};

class Store {
 public:
  virtual ~Store() = default;

  virtual Future<Nothing> recover() = 0;
  virtual Future<ImageInfo> get(const messages::Image& image) = 0;
  virtual Future<Nothing> prune(const std::vector<messages::Image>& excluded,
                                const std::set<std::string>& activePaths) = 0;
  virtual Future<std::vector<messages::StoredImage>> images() = 0;
  virtual Future<StoreUsage> usage() = 0;
  virtual Future<Nothing> remove(const std::vector<std::string>& keys, const std::set<std::string>& activePaths) = 0;
  virtual actors::Try<std::string> keyOf(const messages::Image& image) const = 0;
  virtual Future<Nothing> touch(const std::vector<std::string>& keys) = 0;
  virtual Future<Nothing> swept() = 0;
  virtual Future<Nothing> quiesce() = 0;
  virtual Future<StoreCheck> verify(const std::vector<std::string>& keys) = 0;
  virtual Future<Nothing> discard(const std::vector<std::string>& contentDirs) = 0;
  virtual Future<Nothing> retire(const std::vector<std::string>& contentDirs) = 0;
  virtual Future<std::string> lookUp(const messages::Image& image) = 0;
};

}  // namespace prov::store
