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
// the free fraction of the work dir's file system is checked, and below
// `image_disk_headroom` pruneImages(excluded_images) runs.
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
};

struct ImageGcConfig {
  double imageDiskHeadroom = 0.1;  // prune when the free fraction falls below this
  std::chrono::nanoseconds imageDiskWatchInterval = std::chrono::minutes(1);
  std::vector<messages::Image> excludedImages;
};

// Parses --image_gc_config (JSON, or a file path): {"image_disk_headroom": 0.1,
// "image_disk_watch_interval": {"nanoseconds": N}, "excluded_images":
// ["busybox", ...]}. InvalidArgument naming the field otherwise.
Try<ImageGcConfig> parseImageGcConfig(const std::string& jsonOrFile);

struct ProvisionInfo {
  std::string rootfs;
  std::string backend;
  messages::StoredImage image;  // the store's index entry: its config; reference and manifest digest
                                // (Docker/OCI) or the AppC ids (StoredImage::appc)
  std::vector<std::string> ephemeralVolumes;
};

struct ContainerInfo {
  std::string id;
  std::vector<messages::ContainerRootfs> rootfses;
};

// Free fraction (0..1) of the file system holding a path.
using DiskFree = std::function<Try<double>(const std::string& path)>;

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
    std::string defaultBackend;
    std::optional<ImageGcConfig> imageGc;
    DiskFree diskFree;                         // empty: statvfs
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

  Future<std::vector<ContainerInfo>> containers();
  Future<std::vector<messages::StoredImage>> images();
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
