#pragma once

// The image store for Docker and OCI images (Mesos docker/store.cpp, with
// its gaps closed): the "docker" provider's Store (store/store.hpp). An
// actor; every call may come from any thread.
//
// get(image): the image's layers (extracted, verified) and config.
//   - Cached by the image's normalised key, so `busybox`, `busybox:latest`
//     and `docker.io/library/busybox` are one entry. A cached image whose
//     layer (or config) went missing on disk is pulled again; only what is
//     missing is fetched. `cached = false` re-resolves the manifest and
//     reuses every layer already stored.
//   - Concurrent gets of one image share one pull; images that share layers
//     fetch each shared layer once. Discarding one caller's future leaves
//     the pull to the others; when every caller has discarded, the pull (and
//     its downloads and extractions) stops and leaves nothing behind.
//   - Each layer streams from the puller into extraction in a staging
//     directory, through the extractor (store/extractor.hpp), which bounds
//     how many run at once; a pull asks for its layers base first. A layer is committed (renamed into layers/<chain
//     id>) only after its blob digest (checked by the puller) and its diffID (checked here, against the config's
//     rootfs.diff_ids) matched, and after the layers below it, so that the directories it only implies take their
//     owner, mode and times from them. On any failure its staging directory is removed and nothing is stored.
// recover(): empties staging/, finishes an interrupted gc/ sweep, loads the
//   index and drops the images whose layers or config are gone.
// prune(excluded, activePaths): forgets every image but `excluded` and those
//   whose every layer is in `activePaths` (in use by containers), then
//   removes every layer and config that no remaining image, no path in
//   `activePaths` (layer rootfs dirs or config files in use by containers)
//   and no running pull uses: renamed into gc/ at once, deleted in the
//   background.
//
// Errors: as the puller's (NotFound, Unauthorized, Unavailable, ...);
// DigestMismatch for a blob or diffID that does not match; Corruption for a
// blob that does not decompress or is not a tar; InvalidArgument for a layer
// entry that escapes (naming it); ResourceExhausted past a limit;
// Unsupported for an image type without a puller or a layer media type
// without a decompressor.

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "actors/future.hpp"
#include "fetcher/puller.hpp"
#include "messages/image.pb.h"
#include "store/extractor.hpp"
#include "store/process_store.hpp"
#include "store/tar_apply.hpp"

namespace prov::actors {
class Runtime;
}

namespace prov::store {

// One layer of a pull, as a progress display sees it.
struct LayerProgress {
  enum class Phase {
    Waiting,      // queued for a slot of the extractor
    Downloading,  // bytesDone of totalBytes went to the layer's extraction
    Extracting,   // every byte arrived; extracting, then committing
    Done,         // committed
    Cached,       // already stored: not fetched
    Failed,       // the layer's pull failed
  };
  std::string image;            // the normalised key (imageKey) of the pull fetching the layer
  std::string layer;            // the layer's blob digest, "sha256:<hex>"
  std::int64_t totalBytes = 0;  // the blob's size, as its descriptor says
  std::int64_t bytesDone = 0;   // blob bytes handed to extraction so far
  Phase phase = Phase::Waiting;
};

struct ImageStoreOptions {
  std::string storeDir;         // <work_dir>/store/docker
  messages::Platform platform;  // empty os: this host's
  ExtractLimits limits;
  // Every layer's download and extraction goes through it; give the
  // stores one to share for one bound on the node. Null: the store makes
  // its own, with `maxConcurrentLayers` slots (0: ExtractorOptions' default).
  std::shared_ptr<Extractor> extractor;
  std::size_t maxConcurrentLayers = 0;
  bool syncLayers = true;  // syncfs before a layer becomes visible
  // Empty: none. Called synchronously for each layer of each pull: Cached or
  // Waiting, then Downloading (0 bytes when its slot is taken), Extracting,
  // Done, or Failed at any point. Cached, Waiting, Done and Failed run on the
  // store's strand; Downloading with 0 bytes on the extractor's; the other
  // Downloading events and Extracting on the thread that writes the layer's
  // bytes (the puller's I/O thread, or a blocking-pool thread for local
  // sources). One
  // layer's events come in that order, never at once; a layer that another
  // image's pull is already fetching reports under that pull's key only. So
  // it must be cheap (it runs once per chunk), thread-safe, and must not call
  // into the store. A get that finds its image stored pulls nothing and
  // reports nothing.
  std::function<void(const LayerProgress&)> progress;
};

// The puller for an image (by its type and source); null when none serves it.
using PullerFor = std::function<std::shared_ptr<fetcher::Puller>(const messages::Image&)>;

// The normalised key of an image: "docker://docker.io/library/busybox:latest",
// "oci:/abs/dir:tag", "docker-archive:/abs/file[:reference]". InvalidArgument for a bad
// reference.
Try<std::string> imageKey(const messages::Image& image);

// The request imageKey() made `key` from (the path of a local source as
// the key has it: absolute). InvalidArgument for a key it could not make.
Try<messages::Image> imageOfKey(const std::string& key);

// OCI chain ids of layers with these diffIDs, base first.
std::vector<std::string> chainIds(const std::vector<std::string>& diffIds);

class ImageStoreProcess;
extern template class ProcessStore<ImageStoreProcess>;  // in image_store.cpp

class ImageStore final : public ProcessStore<ImageStoreProcess> {
 public:
  // Makes the store's directories; IO error when it cannot.
  static Try<std::unique_ptr<ImageStore>> create(actors::Runtime& runtime, ImageStoreOptions options,
                                                 PullerFor pullerFor);
  ~ImageStore() override;

  Try<std::string> keyOf(const messages::Image& image) const override;

  // Why recover() found no usable index, if so ("" otherwise).
  Future<std::string> recoveryWarning();

 private:
  ImageStore(std::unique_ptr<ImageStoreProcess> process, actors::Runtime& runtime);
};

}  // namespace prov::store
