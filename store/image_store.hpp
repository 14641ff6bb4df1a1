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
//     how many run at once; a pull asks for its layers base first. A layer
//     is committed only after its blob digest (checked by the puller) and
//     its diffID (checked here, against the config's rootfs.diff_ids)
//     matched. On any failure its staging directory is removed and nothing
//     is stored.
//
// ONE EXTRACTION PER DIFF_ID. A layer's tree depends on the layers below it
// in one way only: a directory the layer only implies (its tar has entries
// below it, not an entry for it) takes its owner, mode and times from the
// nearest layer below that has it, as Docker and containerd give it. So
// layers used to be keyed by chain id, and the same 8 GB layer on two bases
// was extracted twice (containerd #3714, #13307); Mesos keyed by digest and
// got those directories wrong. Here:
//   - A layer is extracted once per diff_id, into its seed
//     layers/<diff hex>: whiteouts kept (the same tree serves every place in
//     a chain; at the base, overlay and the copy backend read a whiteout as
//     nothing; the bind and aufs backends show a base layer's whiteouts as
//     the 0/0 character devices they are, as aufs already did above the
//     base), the implied directories left as extracted and listed in its
//     `implied` file. Tar writers emit every parent, so nearly every seed
//     lists none, and serves every chain as it is.
//   - Once a pull's seeds are committed, its layers are placed base first
//     (placeLayer, store/layer_disk.hpp): a seed that implies directories
//     serves a chain as it is when the layers below have none of them;
//     otherwise the chain gets the variant layers/<seed>-<16 hex> for how
//     the layers below settle them (owner, mode, mtime: the name is a hash
//     of that), made once by linking the seed's tree (its directories made
//     anew, its files hard links: a variant costs directories) and settling
//     them. Chains whose layers below agree share the variant. A variant
//     rather than a fix-up the backends apply: every backend, verify and
//     repair then see one directory per layer, as before.
//   - StoredImage.layer_ids are these layer ids, one per manifest layer. A
//     diff_id an image has twice is one directory in ImageInfo::layers, at
//     its top place (overlay refuses a lower directory twice).
//   - MIGRATION. Layers committed before (layers/<chain hex>) stay where
//     they are, under the ids the index already lists, so running
//     containers' lower directories and records stay valid and nothing is
//     pulled again. A pull uses one for the same chain, as before; a base
//     layer's chain id is its diff_id, so an old base layer serves every
//     image on that base. They are never shared with another chain: the old
//     layout did not record which directories a layer only implied, and a
//     guess could give a container a directory with the wrong owner or
//     mode. An old base layer holds the seed's name without its whiteouts
//     or its implied list, so a chain that needs that diff_id higher up
//     extracts a seed under layers/<diff hex>-s, once. The old layers go
//     with the images that use them (prune).
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
  // The layer's place in the image, base first (0): a layer started before
  // its config reports before the ones below it that are cached. -1: unknown.
  int position = -1;
};

class Trust;  // store/trust.hpp

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
  // Null: every image is let in. Otherwise each pull is checked between
  // resolving the manifest and fetching its first layer (a refusal stores
  // nothing), and each stored image again before it is handed out.
  std::shared_ptr<Trust> trust;
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
