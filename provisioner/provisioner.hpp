#pragma once

// The Provisioner: what an agent embeds (Mesos's Provisioner, with the bugs
// of its section 8 fixed). A facade owning an actor; every call returns a
// future and may come from any thread.
//
//   recover(known)        rebuilds the containers from disk, destroys the ones
//                         not in `known` (nested ones first: the reboot case),
//                         recovers the image store.
//   provision(id, image)  pulls (or finds) the image and assembles a new rootfs
//                         for container `id` with the default backend. A
//                         container may hold several rootfses (its image and
//                         image volumes); ids nest as "parent/child". The
//                         container's record (the layers and config each of
//                         its rootfses uses) is written before the rootfs is
//                         made, so image GC never takes what a container uses.
//                         A discarded provision cleans up what it made.
//   destroy(id)           children first, then waits for an in-flight provision,
//                         then unmounts (lazily) and removes every rootfs and the
//                         container's directory. True when something was there,
//                         false for an unknown id.
//   pruneImages(excluded) under the write lock (provision and destroy take the
//                         read lock): keeps `excluded` and every layer and
//                         config a container uses; removes the rest.
//
// Automatic image GC: with `imageGcConfig`, every `image_disk_watch_interval`
// collectImages() runs one check, by one of two policies (ImageGcConfig):
// Mesos's (below `image_disk_headroom` free on the work dir's file system,
// pruneImages(excluded_images)) or the kubelet's (past a high threshold of
// a store's file system or a store size cap, the least recently used
// images no container uses, down to the low threshold).
//
// One process per work dir: create() takes an exclusive lock on
// <work_dir>/lock and fails naming the pid that holds it.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/fs.hpp"
#include "actors/future.hpp"
#include "actors/process_owner.hpp"
#include "backend/backend.hpp"
#include "messages/container.pb.h"
#include "messages/image.pb.h"
#include "provisioner/bundle.hpp"
#include "store/image_store.hpp"
#include "store/store.hpp"

namespace prov::actors {
class Runtime;
}

namespace prov::provisioner {

using actors::Error;
using actors::ErrorKind;
using actors::Future;
using actors::Nothing;
using actors::Try;

// Mesos's flag names, minus the dashes.
struct Flags {
  std::string workDir = "/var/lib/provisioner";
  std::string imageProviders = "docker,appc";
  std::string imageProvisionerBackend;                          // empty: overlay, aufs, copy, as Mesos chooses
  std::string dockerRegistry = "https://registry-1.docker.io";  // or a directory of docker save tarballs
  std::string dockerStoreDir;                                   // empty: <work_dir>/store/docker
  std::string dockerConfig;                                     // a file or inline JSON
  std::vector<std::string> dockerInsecureRegistries;            // host:port
  std::string dockerRegistryCa;                                 // an extra CA bundle for registries
  std::vector<std::string> dockerRegistryMirrors;
  // A containers-policy.json(5) file; empty: every image is let in.
  // Read, with the key files it names and registriesDir, when the
  // provisioner is created: a bad one fails create() (store/trust.hpp).
  std::string signaturePolicy;
  std::string registriesDir;  // containers-registries.d(5); empty: /etc/containers/registries.d
  std::string appcStoreDir;
  std::string appcSimpleDiscoveryUriPrefix = "http://";
  std::string imageGcConfig;  // JSON or a file holding it
  store::ExtractLimits limits;
  bool overlayVolatile = false;  // backend::BackendOptions::overlayVolatile
  // The command line's progress display; empty: none.
  std::function<void(const store::LayerProgress&)> progress;
  // How long create() waits for the work dir's lock while another process
  // holds it. 0 (an embedder's default): fail at once, Unavailable naming
  // the holder's pid; an agent must not wait silently on another agent.
  // The command line waits (--lock_timeout).
  std::chrono::milliseconds lockTimeout{0};
  // Told the holder's pid once when create() starts waiting for the lock.
  std::function<void(pid_t holder)> onLockWait;
  // The registry ("host:port", as an image reference names it) this
  // process is about to pull from, when it knows (the command line's pull
  // and provision): create() starts its TLS set-up in the background,
  // unless the registry is known to speak plain http. Empty: nothing early.
  std::string pullsFrom;
  // The one image provider ("docker" or "appc") this process will use,
  // when it knows (the command line's pull: one store's get). create()
  // makes and recovers only that provider's store, when it is enabled and
  // no image GC is configured (its checks weigh every store). Empty: every
  // enabled provider's.
  std::string onlyProvider;
};

struct ImageGcConfig {
  // Mesos's policy: when the free fraction falls below this, every image
  // no container uses goes. Not with the kubelet's.
  double imageDiskHeadroom = 0.1;
  std::chrono::nanoseconds imageDiskWatchInterval = std::chrono::minutes(1);
  std::vector<messages::Image> excludedImages;  // never removed, by either policy
  // The kubelet's policy (imageGCHighThresholdPercent, ...), on when a
  // threshold or the cap is set: when more than `highThresholdPercent` of
  // a store's file system (its directory's, as the kubelet's image fs) is
  // used, or the stores' content takes more than `maxStoreBytes`, images
  // go least recently used first until at most `lowThresholdPercent` is
  // used and the content fits under the cap. An image a container uses, an
  // excluded one and one pulled less than `minimumAge` ago stay.
  double highThresholdPercent = 0;  // 0: no threshold
  double lowThresholdPercent = 0;
  std::uint64_t maxStoreBytes = 0;  // 0: no cap
  std::chrono::nanoseconds minimumAge = std::chrono::minutes(2);
  bool leastRecentlyUsed() const { return highThresholdPercent > 0 || maxStoreBytes > 0; }
};

// Parses --image_gc_config (JSON, or a file path). Mesos's policy:
// {"image_disk_headroom": 0.1, "image_disk_watch_interval": {"nanoseconds":
// N}, "excluded_images": ["busybox", ...]}. The kubelet's, instead of the
// headroom: "image_gc_high_threshold_percent" (default 85 when the low one
// is given), "image_gc_low_threshold_percent" (default 80), below the high;
// "image_store_max_bytes"; "image_minimum_age": {"nanoseconds": N} (default
// 2 minutes). InvalidArgument naming the field otherwise.
Try<ImageGcConfig> parseImageGcConfig(const std::string& jsonOrFile);

struct ProvisionInfo {
  std::string rootfs;
  std::string backend;
  // The store's index entry: its config; reference and manifest digest
  // (Docker/OCI) or the AppC ids (StoredImage::appc). Shared by the
  // provisions of one image, not copied for each; set in every result of
  // provision().
  std::shared_ptr<const messages::StoredImage> image;
  std::vector<std::string> ephemeralVolumes;
};

struct ContainerInfo {
  std::string id;
  std::vector<messages::ContainerRootfs> rootfses;
};

// The size of the file system holding a path, and what of it is available
// (statvfs's f_blocks and f_bavail, in bytes), and which it is (stat's
// st_dev: equal for the paths on one file system; 0 when a DiskSpaceOf
// does not say, and then each store counts as a file system of its own).
struct DiskSpace {
  std::uint64_t total = 0;
  std::uint64_t available = 0;
  std::uint64_t device = 0;
};
using DiskSpaceOf = std::function<Try<DiskSpace>(const std::string& path)>;

// An image in a store, with what it takes on disk (Provisioner::imageUsage).
struct ImageUsage {
  messages::StoredImage image;  // last_used_at: its last use, to the minute
  std::int64_t bytes = 0;       // its content (layers) on disk, each once
  std::int64_t ownBytes = 0;    // of that, what no other image shares (what removing it frees,
                                // unless a container uses it)
  bool inUse = false;           // a container's rootfs is made from it
  // How the signature policy let it in, as last recorded; none when no
  // policy has checked it.
  std::optional<store::Verification> verified;
};

// An image's layers checked against the records made when they were
// committed (Provisioner::verifyImages).
struct ImageCheck {
  messages::StoredImage image;
  std::vector<store::ContentCheck> layers;  // base first; a layer two images share is in each
  bool ok() const {
    for (const auto& layer : layers) {
      if (!layer.ok()) return false;
    }
    return true;
  }
};

// What Provisioner::repairImages() did for one image.
struct ImageRepair {
  ImageCheck found;                    // its check before the repair
  std::vector<std::string> refetched;  // damaged layers moved out and fetched and extracted again
  // Damaged layers a container uses: left on disk for those containers
  // (removed by the first prune after the last one goes), fetched again
  // for every later provision.
  std::vector<std::string> inUse;
  std::string error;                // why it was not repaired (the source is gone, ...)
  std::optional<ImageCheck> after;  // its check after the repair, when one was made
  bool repaired() const { return found.ok() || (after && after->ok()); }
};

class ProvisionerProcess;

class Provisioner {
 public:
  // Checks the flags, locks the work dir, creates the backends and stores.
  static Try<std::unique_ptr<Provisioner>> create(const Flags& flags, actors::Runtime& runtime);

  // For tests and embedders that bring their own parts.
  struct Parts {
    std::string workDir;
    // By provider (store::kDockerProvider, store::kAppcProvider); a
    // provider without a store is off.
    std::map<std::string, std::unique_ptr<store::Store>> stores;
    std::map<std::string, std::unique_ptr<backend::Backend>> backends;
    // The backend of new rootfses; empty: the one this host suits
    // (backend::defaultBackend of the work dir), chosen at the first
    // provision.
    std::string defaultBackend;
    std::optional<ImageGcConfig> imageGc;
    DiskSpaceOf diskSpace;                     // empty: statvfs
    std::chrono::milliseconds lockTimeout{0};  // as Flags::lockTimeout
    std::function<void(pid_t holder)> onLockWait;
  };
  static Try<std::unique_ptr<Provisioner>> create(Parts parts, actors::Runtime& runtime);

  ~Provisioner();

  Future<Nothing> recover(const std::set<std::string>& knownContainerIds);
  Future<ProvisionInfo> provision(const std::string& containerId, const messages::Image& image);
  // Writes an OCI runtime bundle (provisioner/bundle.hpp) for a rootfs of
  // the container that provision() handed out: options.dir, which must not
  // exist, made 0700 with config.json and a link to the rootfs. Recorded
  // with the rootfs first, so that destroy() (and recover() of a container
  // that is gone) removes it. Its path.
  Future<std::string> writeBundle(const std::string& containerId, const ProvisionInfo& provisioned,
                                  const BundleOptions& options);
  Future<bool> destroy(const std::string& containerId);
  // Fetches an image into its store without provisioning anything.
  Future<messages::StoredImage> pullImage(const messages::Image& image);
  Future<Nothing> pruneImages(const std::vector<messages::Image>& excludedImages);
  // READY once the work the provisioner runs in the background has ended:
  // an image GC check, the stores' gc/ sweeps and index writes (the last
  // uses of images), as started by the calls whose futures were READY
  // before it. What those calls did is then on disk: a host that exits
  // without destroying the provisioner (the command line does, to spare
  // stopping each actor) waits for it first. Destroying it waits for the
  // stores' part of it (docs/embedding.md, Destruction).
  Future<Nothing> quiesce();

  Future<std::vector<ContainerInfo>> containers();
  Future<std::vector<messages::StoredImage>> images();
  // Every image with its size, own bytes, last use and whether it is used.
  Future<std::vector<ImageUsage>> imageUsage();
  // The images' layers (every image's when `images` is empty) checked
  // against their records: each damaged path named (store/layer_record.hpp).
  // A layer from before records is recorded as it is (adopted). NotFound
  // for an image the stores do not hold. Runs beside provisions; a layer
  // image GC removes meanwhile is reported gone, not damaged.
  Future<std::vector<ImageCheck>> verifyImages(const std::vector<messages::Image>& images);
  // verifyImages, then each damaged image repaired from its source: it is
  // looked up there again first (a source that is gone, or refuses, leaves
  // everything as it was, and the image's `error` says why); then under the
  // write lock its damaged layers that no container uses go to gc/, the
  // image is fetched again (only those layers are downloaded and extracted)
  // and checked again. A damaged layer a container uses is not touched
  // (overlayfs forbids changing a lower directory under a live mount): it
  // is listed in `inUse`, retired (Store::retire: never handed out again)
  // and fetched again beside it for later provisions; the first prune after
  // its last container goes removes it. A tag
  // that names another manifest now is not followed (the `error` says to
  // pull it again). An image named in `images` is fetched with that request
  // (its credentials); the others from their keys. Docker/OCI images only
  // (an AppC image's `error` says so).
  Future<std::vector<ImageRepair>> repairImages(const std::vector<messages::Image>& images);
  // One check of automatic image GC now, as the watch makes them (by the
  // configured policy): the keys of the images it removed. InvalidArgument
  // without an image GC config.
  Future<std::vector<std::string>> collectImages();
  // Counters and timers, with Mesos's names where Mesos has one.
  Future<std::map<std::string, double>> metrics();
  // The same and the pull-duration histogram, in Prometheus's text format
  // (provisioner/metrics.hpp).
  Future<std::string> metricsText();

  // The ids of every container on disk under `workDir` (for a command-line
  // run that counts them all as known).
  static Try<std::set<std::string>> containersOnDisk(const std::string& workDir);

 private:
  Provisioner(std::unique_ptr<ProvisionerProcess> process, actors::Runtime& runtime, actors::fs::Fd lock);
  struct Owned;
  actors::Runtime& runtime_;
  // The process and the work dir's lock. Destroyed here, or, when the
  // Provisioner is destroyed on a runtime thread (in a callback), on a
  // thread of its own (Runtime::offload): stopping the process and its
  // stores waits for them, which must neither block a runtime thread nor
  // delete a process under its own running handler.
  std::unique_ptr<Owned> owned_;
};

// "a", "a/b": each part [A-Za-z0-9_.-]+, not "." or "..". InvalidArgument otherwise.
Try<Nothing> validateContainerId(const std::string& id);

// IMAGE as the command line takes it: docker://REF or a bare REF,
// oci:DIR[:TAG], docker-archive:FILE[:REF], appc:NAME[,LABEL=VALUE...].
Try<messages::Image> parseImage(const std::string& text);

}  // namespace prov::provisioner
