#include "store/image_store.hpp"

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>

#include "actors/async.hpp"
#include "actors/collect.hpp"
#include "actors/defer.hpp"
#include "actors/dispatch.hpp"
#include "actors/fs.hpp"
#include "actors/log.hpp"
#include "actors/process.hpp"
#include "actors/runtime.hpp"
#include "actors/shared_work.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/reference.hpp"
#include "store/atomic_file.hpp"
#include "store/content_sizes.hpp"
#include "store/extractor.hpp"
#include "store/gc.hpp"
#include "store/layer_disk.hpp"
#include "store/layer_stream.hpp"
#include "store/metadata_manager.hpp"
#include "store/paths.hpp"
#include "store/process_store_impl.hpp"
#include "store/trust.hpp"

namespace prov::store {

using actors::Future;
using actors::Promise;
using messages::Image;
using messages::ResolvedImage;
using messages::StoredImage;

Try<Image> imageOfKey(const std::string& key) {
  Image image;
  if (key.starts_with("docker://")) {
    auto reference = fetcher::parseImageReference(std::string_view(key).substr(9));
    if (reference.isError()) return reference.error();
    image.set_type(Image::DOCKER);
    *image.mutable_reference() = *reference;
    return image;
  }
  if (key.starts_with("oci:")) {
    std::string rest = key.substr(4);
    // A tag never holds '/'; the directory may hold ':'.
    const auto colon = rest.rfind(':');
    if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
      image.set_layout_tag(rest.substr(colon + 1));
      rest.resize(colon);
    }
    image.set_type(Image::OCI_LAYOUT);
    image.set_path(rest);
    return image;
  }
  if (key.starts_with("docker-archive:")) {
    const std::string rest = key.substr(15);
    image.set_type(Image::DOCKER_ARCHIVE);
    image.set_path(rest);
    // "FILE:REFERENCE" when an image of the archive was picked: the file is
    // the prefix that is one (a path may hold ':').
    for (auto colon = rest.find(':'); colon != std::string::npos; colon = rest.find(':', colon + 1)) {
      std::error_code ec;
      if (!std::filesystem::is_regular_file(rest.substr(0, colon), ec)) continue;
      auto picked = fetcher::parseImageReference(std::string_view(rest).substr(colon + 1));
      if (picked.isError()) continue;
      image.set_path(rest.substr(0, colon));
      *image.mutable_reference() = *picked;
      break;
    }
    return image;
  }
  return Error(ErrorKind::InvalidArgument, "'" + key + "' is not a Docker/OCI image key");
}

Try<std::string> imageKey(const Image& image) {
  switch (image.type()) {
    case Image::DOCKER: {
      auto reference = fetcher::normalize(image.reference());
      if (reference.repository().empty()) return Error(ErrorKind::InvalidArgument, "The image has no repository");
      return "docker://" + fetcher::toString(reference);
    }
    case Image::OCI_LAYOUT:
    case Image::DOCKER_ARCHIVE: {
      std::error_code ec;
      const auto path = std::filesystem::weakly_canonical(std::filesystem::absolute(image.path()), ec);
      if (image.path().empty() || ec) {
        return Error(ErrorKind::InvalidArgument, "Failed to resolve the image path '" + image.path() + "'");
      }
      if (image.type() == Image::DOCKER_ARCHIVE) {
        // The image it picks is part of the key: two images of one archive
        // are two entries, never one served for the other.
        const std::string picked = fetcher::toString(image.reference());
        return "docker-archive:" + path.string() + (picked.empty() ? "" : ":" + picked);
      }
      return "oci:" + path.string() + (image.layout_tag().empty() ? "" : ":" + image.layout_tag());
    }
    default: return Error(ErrorKind::Unsupported, "The Docker image store does not hold this image type");
  }
}

std::vector<std::string> chainIds(const std::vector<std::string>& diffIds) {
  std::vector<std::string> ids;
  for (const auto& diffId : diffIds) {
    ids.push_back(ids.empty() ? diffId : fetcher::sha256Digest(ids.back() + " " + diffId));
  }
  return ids;
}

namespace {

// One layer's progress events (ImageStoreOptions::progress). Its event is
// touched by one thread at a time: the strand, then the extractor's (its
// strand, the writer of the layer's bytes), then the strand again, each step
// after the last completed.
class LayerReporter {
 public:
  LayerReporter(std::function<void(const LayerProgress&)> report, LayerProgress event)
      : report_(std::move(report)), event_(std::move(event)) {}

  void report(LayerProgress::Phase phase) {
    event_.phase = phase;
    report_(event_);
  }
  // The extractor's events for the layer.
  void extraction(const ExtractProgress& progress) {
    event_.bytesDone = progress.bytes;
    report(progress.phase == ExtractProgress::Phase::InputEnded ? LayerProgress::Phase::Extracting
                                                                : LayerProgress::Phase::Downloading);
  }

 private:
  const std::function<void(const LayerProgress&)> report_;
  LayerProgress event_;
};

}  // namespace

class ImageStoreProcess : public actors::Process<ImageStoreProcess> {
 public:
  ImageStoreProcess(actors::Runtime& runtime, ImageStoreOptions options, PullerFor pullerFor)
      : actors::Process<ImageStoreProcess>("docker-store"), runtime_(runtime), options_(std::move(options)),
        pullerFor_(std::move(pullerFor)), metadata_(runtime, options_.storeDir), gc_(runtime, options_.storeDir),
        extractor_(options_.extractor
                       ? options_.extractor
                       : std::make_shared<Extractor>(runtime, ExtractorOptions{options_.maxConcurrentLayers})) {}

  Future<Nothing> recover() {
    return actors::async(runtime_, [dir = options_.storeDir] { return recoverStoreDirs(dir); })
        .then(actors::defer(self(), &Self::loadIndex));
  }

  Future<Nothing> loadIndex(const StoreContents& contents) {
    committed_ = contents.layers;
    unmarked_ = contents.unmarked;
    retired_ = contents.retired;
    configFiles_ = contents.configs;
    return metadata_.recover()
        .then(actors::defer(self(), &Self::keepCompleteImages))
        .then(actors::defer(self(), &Self::checkAfterReboot));
  }

  // After a reboot, the layers committed in the last minutes before it
  // (paths::recent) are checked against their records; a damaged one goes
  // to gc/, and the next get of an image made of it fetches it again.
  Future<Nothing> checkAfterReboot() {
    std::set<std::string> committed = committed_;
    return actors::async(runtime_,
                         [dir = options_.storeDir, committed]() -> Try<std::vector<std::string>> {
                           const std::string journal = paths::recent(dir);
                           const std::string boot = currentBootId();
                           auto recorded = recordsSince(dir);
                           if (recorded.isError()) return recorded.error();
                           const timespec since = *recorded;
                           std::vector<RecentCommit> kept;
                           std::vector<std::string> damaged;
                           std::size_t checked = 0;
                           const auto started = std::chrono::steady_clock::now();
                           const auto commits = readRecentCommits(journal);
                           for (const auto& commit : commits) {
                             if (commit.bootId == boot) {
                               kept.push_back(commit);
                               continue;
                             }
                             const std::string id = paths::layerIdOf(commit.name);
                             if (committed.count(id) == 0) continue;
                             ++checked;
                             const ContentCheck check = checkContent(paths::layerRootfs(dir, id), since);
                             if (check.ok() || check.gone) continue;
                             damaged.push_back(check.rootfs);
                             const std::string first = check.error.empty() ? check.damage.front().path + ": " +
                                                                                 check.damage.front().what
                                                                           : check.error;
                             actors::log(actors::LogLevel::Warn, "store.damaged_layer",
                                         {{"layer", check.rootfs},
                                          {"damaged_paths", std::to_string(check.damage.size())},
                                          {"first", first}});
                           }
                           if (kept.size() == commits.size()) return damaged;
                           actors::log(actors::LogLevel::Info, "store.reboot_check",
                                       {{"layers", std::to_string(checked)},
                                        {"damaged", std::to_string(damaged.size())},
                                        {"ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                  std::chrono::steady_clock::now() - started)
                                                                  .count())}});
                           auto written = writeRecentCommits(journal, kept);
                           if (written.isError()) return written.error();
                           return damaged;
                         })
        .then(actors::defer(self(), [this](const std::vector<std::string>& damaged) { return discard(damaged); }));
  }

  // The index cut to the images whose layers and config are all there.
  Future<Nothing> keepCompleteImages(const std::vector<StoredImage>& images) {
    images_.clear();
    served_.clear();
    std::vector<std::string> gone;
    for (const auto& image : images) {
      bool complete = true;
      for (const auto& id : image.layer_ids()) complete = complete && committed_.count(id) > 0;
      const std::string config = configPath(image);
      complete = complete && (config.empty() || actors::fs::exists(config));
      if (complete) {
        images_[image.key()] = image;
        if (image.layer_digests_size() == image.layer_ids_size()) {
          for (int i = 0; i < image.layer_ids_size(); ++i) noteBlob(image.layer_ids(i), image.layer_digests(i));
          for (const auto& id : image.layer_ids()) knownLayers_.insert({id, paths::seedOf(id)});
        }
      } else {
        gone.push_back(image.key());
      }
    }
    if (gone.empty()) return Nothing{};
    return metadata_.remove(gone);
  }

  Future<ImageInfo> get(const Image& image) {
    auto key = imageKey(image);
    if (key.isError()) return key.error();
    const bool recheck = image.has_cached() && !image.cached();
    auto cached = images_.find(*key);
    if (recheck || cached == images_.end()) return joinPull(*key, image);
    // A cached image: are its layers and config still on disk (and not
    // retired)?
    const StoredImage& stored = cached->second;
    for (const auto& id : stored.layer_ids()) {
      if (committed_.count(id) == 0 || committed_.count(paths::seedOf(id)) == 0) return joinPull(*key, image);
    }
    const Served& served = servedOf(*key, stored);
    return onDisk(served).then(actors::defer(self(), &Self::servePresent, *key, image, served.info));
  }

  // What a get hands out for the image `key` (stored), made once and then
  // shared: a burst of provisions of one image would otherwise copy it, and
  // make its paths again, at each step of each.
  struct Served {
    std::shared_ptr<const ImageInfo> info;
    std::vector<std::string> paths;  // what onDisk() looks for: its layers, then its config
    std::string pathsKey;            // the paths, one per line
  };

  const Served& servedOf(const std::string& key, const StoredImage& stored) {
    if (auto it = served_.find(key); it != served_.end()) return it->second;
    Served served;  // whole before it is kept
    served.info = std::make_shared<const ImageInfo>(infoOf(stored));
    for (const auto& id : stored.layer_ids()) served.paths.push_back(paths::layerRootfs(options_.storeDir, id));
    if (!configPath(stored).empty()) served.paths.push_back(configPath(stored));
    for (const auto& path : served.paths) served.pathsKey += path + "\n";
    return served_.emplace(key, std::move(served)).first->second;
  }

  // Whether the layers of an image, then its config, are on disk: one look
  // for all the requests of an image that come together (a burst of
  // provisions), not one each. The look runs off the strand; one request
  // given up on does not end it for the others.
  Future<std::vector<bool>> onDisk(const Served& served) {
    return presenceChecks_.join(served.pathsKey, [&] {
      return actors::async(runtime_, [paths = served.paths] {
        std::vector<bool> present;
        for (const auto& path : paths) present.push_back(actors::fs::exists(path));
        return present;
      });
    });
  }

  // The stored image as it is when `present` (its layers', then its
  // config's) says all is there; else pulled again.
  Future<ImageInfo> servePresent(const std::string& key, const Image& image,
                                 const std::shared_ptr<const ImageInfo>& info, const std::vector<bool>& present) {
    const StoredImage& stored = info->image;
    bool complete = true;
    for (int i = 0; i < stored.layer_ids_size(); ++i) {
      if (!present[static_cast<std::size_t>(i)]) {
        forgetLayer(stored.layer_ids(i));
        complete = false;
      }
    }
    if (present.size() > static_cast<std::size_t>(stored.layer_ids_size()) && !present.back()) complete = false;
    if (!complete) return joinPull(key, image);
    if (options_.trust) {
      // The policy may have changed since the pull.
      return options_.trust->check(image, key, stored.manifest_digest())
          .then(actors::defer(self(),
                              [this, key = key, image = image, info] { return serveAccessible(key, image, info); }));
    }
    return serveAccessible(key, image, info);
  }

  Future<ImageInfo> serveAccessible(const std::string& key, const Image& image,
                                    const std::shared_ptr<const ImageInfo>& info) {
    const StoredImage& stored = info->image;
    if (stored.access() == StoredImage::ACCESS_PUBLIC || !stored.has_reference()) return served(info);
    // Pulled with someone's credentials: served only to a request whose
    // own can still read it.
    std::shared_ptr<fetcher::Puller> puller = pullerFor_(image);
    if (!puller)
      return Error(ErrorKind::Unsupported, "Failed to get '" + key + "': no image source for it is configured");
    // NotFound: the digest is gone (a moved tag whose old manifest was
    // deleted): pulled afresh, with this request's own credentials.
    return puller->checkAccess(image, stored.manifest_digest())
        .then(actors::defer(self(), [this, info] { return served(info); }))
        .repair(actors::defer(self(),
                              [this, key = key, image = image](const Future<ImageInfo>& failed) -> Future<ImageInfo> {
                                if (failed.failure().kind != ErrorKind::NotFound) return failed;
                                return joinPull(key, image);
                              }));
  }

  // Requests with different credentials never share a pull: what one may
  // read is not handed to another through the pull it joined.
  Future<ImageInfo> joinPull(const std::string& key, const Image& image) {
    std::string shared = key;
    if (hasOwnCredentials(image)) {
      shared += "\n" + fetcher::sha256Digest(image.credentials().username() + "\n" + image.credentials().password());
    }
    auto found = pullPriorities_.find(shared);
    if (found != pullPriorities_.end() && pulls_.peek(shared)) {
      raise(*found->second, image.priority());
      return pulls_.join(shared, [&] { return pull(key, image, found->second); });
    }
    auto priority = std::make_shared<PullPriority>(image.priority());
    pullPriorities_[shared] = priority;
    Future<ImageInfo> joined = pulls_.join(shared, [&] { return pull(key, image, priority); });
    // Kept while the pull runs, whoever of its callers stays.
    auto forget = actors::defer(self(), [this, shared, priority] {
      auto it = pullPriorities_.find(shared);
      if (it != pullPriorities_.end() && it->second == priority) pullPriorities_.erase(it);
    });
    if (auto running = pulls_.peek(shared)) {
      running->onAny(forget);
    } else {
      forget();
    }
    return joined;
  }

  // A pull's priority: the highest of the requests that joined it, and so
  // of the layers it started or joined.
  struct PullPriority {
    explicit PullPriority(int initial) : value(std::make_shared<std::atomic<int>>(initial)) {}
    std::shared_ptr<std::atomic<int>> value;
    std::vector<std::string> layers;                       // seed ids it waits for
    std::vector<std::shared_ptr<std::atomic<int>>> early;  // of the layers it started before its config
  };

  // A more urgent request joined `pull`: its layers still waiting for a slot
  // move up (no second queue where the old order would hold).
  void raise(PullPriority& pull, int priority) {
    if (!actors::raisePriority(*pull.value, priority)) return;
    for (const auto& id : pull.layers) {
      auto layer = layerPriorities_.find(id);
      if (layer != layerPriorities_.end()) actors::raisePriority(*layer->second, priority);
    }
    for (const auto& layer : pull.early) actors::raisePriority(*layer, priority);
    extractor_->reconsider();
  }

  static bool hasOwnCredentials(const Image& image) {
    return image.has_credentials() && !image.credentials().username().empty();
  }

  Future<Nothing> prune(const std::vector<Image>& excluded, const std::set<std::string>& activePaths) {
    std::set<std::string> keep;
    for (const auto& image : excluded) {
      auto key = imageKey(image);
      if (key.isSome()) keep.insert(*key);
    }
    std::vector<std::string> forget;
    for (const auto& [key, image] : images_) {
      // An image every layer of which a container uses stays listed too.
      const std::vector<std::string> mounted = infoOf(image).layers;
      bool inUse = !mounted.empty();
      for (const auto& rootfs : mounted) inUse = inUse && activePaths.count(rootfs) > 0;
      if (keep.count(key) == 0 && !inUse) forget.push_back(key);
    }
    return forgetAndCollect(forget, activePaths);
  }

  Future<Nothing> remove(const std::vector<std::string>& keys, const std::set<std::string>& activePaths) {
    return forgetAndCollect(keysIn(images_, keys), activePaths);
  }

  // The index without `forget`; then every layer and config that no image
  // left, no path in `activePaths` and no running pull uses goes to gc/.
  Future<Nothing> forgetAndCollect(const std::vector<std::string>& forget, const std::set<std::string>& activePaths) {
    for (const auto& key : forget) {
      images_.erase(key);
      served_.erase(key);
    }
    std::set<std::string> usedLayers, usedConfigs;
    for (const auto& [key, image] : images_) {
      usedLayers.insert(image.layer_ids().begin(), image.layer_ids().end());
      usedConfigs.insert(paths::hexOf(image.config_digest()));
    }
    const std::vector<std::string> pulling = layerPulls_.keys();
    usedLayers.insert(pulling.begin(), pulling.end());
    for (const auto& [key, id] : inflightLayers_) usedLayers.insert(id);
    // A running pull may be placing its layers on any variant of its seeds.
    std::set<std::string> pulledSeeds(pulling.begin(), pulling.end());
    for (const auto& [key, id] : inflightLayers_) pulledSeeds.insert(paths::seedOf(id));
    for (const auto& id : committed_) {
      if (pulledSeeds.count(paths::seedOf(id)) > 0) usedLayers.insert(id);
    }
    // A variant's seed stays: another chain's variant is made from it.
    for (const auto& id : std::set<std::string>(usedLayers)) usedLayers.insert(paths::seedOf(id));
    for (const auto& [key, image] : inflightConfigs_) usedConfigs.insert(image);
    std::vector<std::string> doomed;
    std::set<std::string> retiredDoomed;
    for (const auto* ids : {&committed_, &retired_}) {
      for (const auto& id : *ids) {
        const std::string rootfs = paths::layerRootfs(options_.storeDir, id);
        if (usedLayers.count(id) > 0 || activePaths.count(rootfs) > 0) continue;
        doomed.push_back(paths::layer(options_.storeDir, id));
        if (ids == &retired_) retiredDoomed.insert(id);
      }
    }
    for (const auto& id : retiredDoomed) retired_.erase(id);
    for (const auto& name : configFiles_) {
      const std::string path = paths::config(options_.storeDir, name);
      if (usedConfigs.count(name) == 0 && activePaths.count(path) == 0) doomed.push_back(path);
    }
    for (const auto& path : doomed) {
      forgetLayer(paths::layerIdOf(path));
      sizes_.forget(path + "/rootfs");
      configFiles_.erase(paths::baseName(path));
    }
    Future<Nothing> forgotten = forget.empty() ? Future<Nothing>(Nothing{}) : metadata_.remove(forget);
    // The signature policy's records of manifests no image holds now.
    std::vector<std::string> manifests;
    for (const auto& [key, image] : images_) manifests.push_back(image.manifest_digest());
    forgotten = forgotten.then([this, manifests] {
      return actors::async(runtime_, [dir = paths::trustRecords(options_.storeDir), manifests] {
        Trust::pruneRecords(dir, manifests);
        return Nothing{};
      });
    });
    Future<Nothing> collected = gc_.collect(forgotten, doomed);
    // Once the layers are in gc/: a prune that failed part way puts some
    // back (pruneFailed), with their blobs still known.
    collected.onReady(actors::defer(self(), [this] { forgetGoneBlobs(); }));
    return collected.recover(actors::defer(self(), &Self::pruneFailed, doomed, retiredDoomed));
  }

  // A prune that failed part way: what it did not move into gc/ is still in
  // the store, and the next prune must see it to remove it.
  Future<Nothing> pruneFailed(const std::vector<std::string>& doomed, const std::set<std::string>& wereRetired,
                              const Future<Nothing>& pruned) {
    return gc_.leftBehind(doomed).then(
        actors::defer(self(), [this, pruned, wereRetired](const std::vector<std::string>& left) {
          for (const auto& path : left) {
            const std::string id = paths::layerIdOf(path);
            if (wereRetired.count(id) > 0) {
              retired_.insert(id);
            } else if (paths::layer(options_.storeDir, id) == path) {
              committed_.insert(id);
              // Whether it has an implied file is not known here: taken as
              // not (its diff_id's seed, if needed, is made under its second name).
              if (id.find('-') == std::string::npos) unmarked_.insert(id);
            } else {
              configFiles_.insert(paths::baseName(path));
            }
          }
          return pruned;
        }));
  }

  // READY once no prune and no background sweep runs.
  Future<Nothing> swept() { return gc_.quiesce(); }
  // The sweeps, then the index's writes (a sweep's end writes none).
  Future<Nothing> quiesce() {
    return gc_.quiesce().then(actors::defer(self(), [this] { return metadata_.quiesce(); }));
  }

  std::vector<StoredImage> images() {
    std::vector<StoredImage> all;
    for (const auto& [key, image] : images_) all.push_back(image);
    return all;
  }

  Nothing touch(const std::vector<std::string>& keys) {
    for (const auto& key : keys) {
      auto it = images_.find(key);
      if (it == images_.end()) continue;
      const std::int64_t before = it->second.last_used_at();
      touchLastUse(it->second, metadata_);
      if (it->second.last_used_at() != before) served_.erase(key);
    }
    return Nothing{};
  }

  Future<Nothing> discard(const std::vector<std::string>& contentDirs) {
    std::vector<std::string> doomed;
    for (const auto& rootfs : contentDirs) {
      const std::string layer = rootfs.substr(0, rootfs.rfind('/'));
      const std::string id = paths::layerIdOf(layer);
      if (paths::layerRootfs(options_.storeDir, id) != rootfs || committed_.count(id) == 0) continue;
      forgetLayer(id);
      sizes_.forget(rootfs);
      doomed.push_back(layer);
    }
    // Nothing damaged (as after most boots): no trip to the blocking pool
    // on recover's path, and no second sweep of gc/ right after recover's.
    if (doomed.empty()) return Nothing{};
    return gc_.collect(Nothing{}, doomed)
        .recover(actors::defer(self(), &Self::pruneFailed, doomed, std::set<std::string>{}));
  }

  // Each of `contentDirs` (a variant with its seed) out of committed_,
  // marked on disk (paths::retiredIn), kept for prune to remove once no
  // container mounts it.
  Future<Nothing> retire(const std::vector<std::string>& contentDirs) {
    std::vector<std::string> layers;
    for (const auto& rootfs : contentDirs) {
      const std::string id = paths::layerIdOf(rootfs.substr(0, rootfs.rfind('/')));
      if (paths::layerRootfs(options_.storeDir, id) != rootfs) continue;
      for (const auto& each : {id, paths::seedOf(id)}) {
        if (committed_.count(each) == 0) continue;
        forgetLayer(each);
        retired_.insert(each);
        sizes_.forget(paths::layerRootfs(options_.storeDir, each));
        layers.push_back(paths::layer(options_.storeDir, each));
      }
    }
    if (layers.empty()) return Nothing{};
    return actors::async(runtime_, [layers]() -> Try<Nothing> {
      for (const auto& layer : layers) {
        auto marked = writeFileAtomically(paths::retiredIn(layer), "", true);
        if (marked.isError()) return marked;
      }
      return Nothing{};
    });
  }

  Future<std::string> lookUp(const Image& image) {
    std::shared_ptr<fetcher::Puller> puller = pullerFor_(image);
    if (!puller) return Error(ErrorKind::Unsupported, "No image source for it is configured");
    messages::Platform platform = options_.platform;
    if (platform.os().empty()) platform = fetcher::hostPlatform();
    return puller->resolve(image, platform).then([](const ResolvedImage& resolved) {
      return resolved.manifest_digest();
    });
  }

  Future<StoreCheck> verify(const std::vector<std::string>& keys) {
    return checkImages(runtime_, self(), options_.storeDir, images_, keys,
                       [this](const StoredImage& image) { return contentOf(image); });
  }

  Future<StoreUsage> usage() {
    StoreUsage usage;
    usage.directory = options_.storeDir;
    for (const auto& [key, image] : images_) {
      usage.images.push_back(image);
      usage.contentOf[key] = contentOf(image).layers;
    }
    std::vector<std::string> rootfses;
    for (const auto& id : committed_) rootfses.push_back(paths::layerRootfs(options_.storeDir, id));
    return sizes_
        .fill(runtime_, self(), usage, rootfses,
              [this](const std::string& rootfs) {
                return committed_.count(paths::layerIdOf(rootfs.substr(0, rootfs.rfind('/')))) > 0;
              })
        .then([this](StoreUsage filled) {
          const std::string policy = options_.trust ? options_.trust->digest() : std::string();
          return actors::async(
              runtime_, [filled = std::move(filled), dir = paths::trustRecords(options_.storeDir), policy]() mutable {
                if (!actors::fs::exists(dir)) return filled;
                for (const auto& image : filled.images) {
                  if (auto verified = Trust::recorded(dir, image.key(), image.manifest_digest(), policy)) {
                    filled.verified[image.key()] = std::move(*verified);
                  }
                }
                return filled;
              });
        });
  }

  Future<std::string> recoveryWarning() { return metadata_.recoveryWarning(); }

  void initialize() override {
    // Bound to the PID, not to this object: a callback that fires after the
    // store is gone is dropped.
    auto post = [pid = self()](std::function<void()> f) { actors::defer(pid, std::move(f))(); };
    pulls_.setPost(post);
    presenceChecks_.setPost(post);
    layerPulls_.setPost(post);
  }

 private:
  std::string configPath(const StoredImage& image) const {
    return image.config_digest().empty() ? "" : paths::config(options_.storeDir, image.config_digest());
  }

  // The seed of `diffId`: the one stored under any of its names, else the
  // first name free for a new one (its own, unless a layer from before
  // session 15, unmarked: no whiteouts, no implied list, or a retired one
  // holds it). Names come into use one after another and go with prune,
  // so a stored seed is among the first few.
  std::string seedFor(const std::string& diffId) const {
    std::string free;
    for (int n = 0; n < 16 || free.empty(); ++n) {
      std::string name = paths::seedName(diffId, n);
      if (committed_.count(name) > 0 && unmarked_.count(name) == 0) return name;
      if (free.empty() && committed_.count(name) == 0 && unmarked_.count(name) == 0 && retired_.count(name) == 0) {
        free = name;
      }
    }
    return free;
  }

  void forgetLayer(const std::string& id) {
    committed_.erase(id);
    unmarked_.erase(id);
  }

  // `blob` holds the layer `layerId` (or its seed): known from now on, so
  // a manifest naming it does not start it before its config.
  void noteBlob(const std::string& layerId, const std::string& blob) {
    knownBlobs_.insert(blob);
    seedBlobs_[paths::seedOf(layerId)].insert(blob);
  }

  // The blobs (and layer ids) of layers no longer here nor pulled, after a
  // prune: a pull may start them before their config again (an image that
  // image GC removed and a pod then needs again). Without this, each would
  // be taken as present for as long as the store runs. (A layer committed
  // by a discarded pull after the prune counted it gone is here with its
  // blob unknown: a pull naming it starts it early, and drops it.)
  void forgetGoneBlobs() {
    std::set<std::string> live;  // seeds of the layers here or being pulled
    for (const auto& id : committed_) live.insert(paths::seedOf(id));
    for (const auto& [pull, id] : inflightLayers_) live.insert(paths::seedOf(id));
    for (const auto& id : layerPulls_.keys()) live.insert(paths::seedOf(id));
    std::set<std::string> blobs;
    for (auto it = seedBlobs_.begin(); it != seedBlobs_.end();) {
      if (live.count(it->first) == 0) {
        it = seedBlobs_.erase(it);
        continue;
      }
      blobs.insert(it->second.begin(), it->second.end());
      ++it;
    }
    knownBlobs_ = std::move(blobs);
    std::erase_if(knownLayers_, [this](const std::string& id) { return committed_.count(id) == 0; });
  }

  // What an image keeps in the store: every layer it lists (a diff_id it
  // has twice too) and the seed of each variant, base first. Prune keeps
  // all of it for the image; usage counts it as the image's; verify checks
  // it (a variant's files are its seed's: damage there is the variant's).
  ImageInfo contentOf(const StoredImage& image) const {
    ImageInfo info{image, {}, configPath(image)};
    std::set<std::string> seen;
    for (const auto& id : image.layer_ids()) {
      for (const auto& dir :
           {paths::layerRootfs(options_.storeDir, paths::seedOf(id)), paths::layerRootfs(options_.storeDir, id)}) {
        if (seen.insert(dir).second) info.layers.push_back(dir);
      }
    }
    return info;
  }

  // `stored` handed out from the store: its last use moves on.
  Future<ImageInfo> served(const std::shared_ptr<const ImageInfo>& info) {
    touch({info->image.key()});
    return actors::readyShared(info);
  }

  ImageInfo infoOf(const StoredImage& image) const {
    ImageInfo info{image, {}, configPath(image)};
    // A layer an image has twice (empty layers, often) is one directory: an
    // overlay mount refuses a lower directory twice. Its top place is the
    // one that counts: everything it holds there it held lower too.
    std::set<std::string> seen;
    for (int i = image.layer_ids_size(); i-- > 0;) {
      const std::string& id = image.layer_ids(i);
      if (seen.insert(paths::seedOf(id)).second) info.layers.push_back(paths::layerRootfs(options_.storeDir, id));
    }
    std::reverse(info.layers.begin(), info.layers.end());
    return info;
  }

  // ---- one image ------------------------------------------------------------

  // One pull's own, from its resolve to its end.
  struct PullState {
    std::string id;                                  // key#serial: in inflightConfigs_, inflightLayers_, speculations_
    std::shared_ptr<ByteBudget> budget;              // what its layers unpack to, together
    std::map<std::string, Future<Nothing>> trusted;  // the policy's verdict, by manifest digest
    bool planned = false;                            // its config came: fetchLayers took over
    bool ended = false;
  };

  // A layer's extraction as started, and who hears of its progress.
  struct StartedLayer {
    Future<messages::ExtractResult> extraction;
    std::shared_ptr<LayerReporter> reporter;
  };

  // A layer started from a manifest before its config came (speculate):
  // known by its blob digest until a pull's config names its diffID.
  struct Speculation {
    std::string owner;  // the pull that started it
    StartedLayer layer;
    std::shared_ptr<std::atomic<int>> priority;
  };

  Future<ImageInfo> pull(const std::string& key, const Image& image, const std::shared_ptr<PullPriority>& priority) {
    std::shared_ptr<fetcher::Puller> puller = pullerFor_(image);
    if (!puller) {
      return Error(ErrorKind::Unsupported, "Failed to pull '" + key + "': no image source for it is configured");
    }
    messages::Platform platform = options_.platform;
    if (platform.os().empty()) platform = fetcher::hostPlatform();
    actors::log(actors::LogLevel::Info, "pull.start", {{"image", key}});
    const auto started = std::chrono::steady_clock::now();
    auto stats = std::make_shared<PullStats>();
    auto state = std::make_shared<PullState>();
    state->id = key + "#" + std::to_string(++pullSerial_);
    state->budget = std::make_shared<ByteBudget>(
        options_.limits.maxImageBytes,
        Error(ErrorKind::ResourceExhausted, "Failed to pull '" + key + "': its layers unpack to more than " +
                                                std::to_string(options_.limits.maxImageBytes) +
                                                " bytes (the image size limit, --max_image_bytes)"));
    auto seen = actors::defer(self(), &Self::manifestSeen, key, image, puller, priority, state);
    Future<ImageInfo> pulled =
        puller->resolveNotifying(image, platform, [seen](const ResolvedImage& partial) { seen(partial); })
            .then(actors::defer(self(), &Self::trusted, key, image, state))
            .then(actors::defer(self(), &Self::fetchLayers, key, image, puller, stats, priority, state))
            .repair(actors::defer(self(),
                                  [this, state](const Future<ImageInfo>& failed) {
                                    // Heard once what it started ahead has ended.
                                    return dropSpeculations(state).then([failed] { return failed; });
                                  }))
            .then([key, started, stats](ImageInfo info) {
              info.fetched = true;
              info.fetchedBytes = stats->fetchedBytes;
              info.imageBytes = stats->imageBytes;
              actors::log(actors::LogLevel::Info, "pull.end",
                          {{"image", key},
                           {"digest", info.image.manifest_digest()},
                           {"layers", std::to_string(info.layers.size())},
                           {"fetched_layers", std::to_string(stats->fetchedLayers)},
                           {"fetched_bytes", std::to_string(stats->fetchedBytes)},
                           {"ms", std::to_string(millisSince(started))}});
              return info;
            })
            .onFailed([key, started](const Error& error) {
              actors::log(actors::LogLevel::Warn, "pull.failed",
                          {{"image", key}, {"ms", std::to_string(millisSince(started))}, {"error", error.message}});
            });
    // Nobody waits any more: what it started ahead stops now, not when the
    // config comes.
    pulled.onDiscard(actors::defer(self(), [this, state] { dropSpeculations(state); }));
    return pulled;
  }

  // What one pull fetched, for its log line and the pull histogram.
  struct PullStats {
    std::int64_t imageBytes = 0;  // every layer, compressed, as the manifest declares
    std::int64_t fetchedBytes = 0;
    std::size_t fetchedLayers = 0;
  };

  static long long millisSince(std::chrono::steady_clock::time_point started) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  }

  // The policy's verdict on manifest `digest` of pull `state`, asked once
  // per pull (from its manifest seen early, or from its resolve).
  Future<Nothing> trustOf(const std::shared_ptr<PullState>& state, const Image& image, const std::string& key,
                          const std::string& digest) {
    if (!options_.trust) return Nothing{};
    auto found = state->trusted.find(digest);
    if (found != state->trusted.end()) return found->second;
    Future<Nothing> verdict = options_.trust->check(image, key, digest).then([] { return Nothing{}; });
    state->trusted.emplace(digest, verdict);
    return verdict;
  }

  // The manifest checked is the one whose layers are fetched: no second
  // look at the tag.
  Future<ResolvedImage> trusted(const std::string& key, const Image& image, const std::shared_ptr<PullState>& state,
                                const ResolvedImage& resolved) {
    return trustOf(state, image, key, resolved.manifest_digest()).then([resolved] { return resolved; });
  }

  // Whether the blob digest of every layer here is known: only then does
  // a blob not among them mean a layer the store lacks. Those of an index
  // entry from before session 23 are not, nor those of a layer no image
  // lists (committed by a pull that crashed before its index entry, or
  // kept for a container after its image went): while one is here, no
  // layer starts before its config.
  bool everyLayerKnown() const {
    for (const auto& id : committed_) {
      if (knownLayers_.count(id) == 0) return false;
    }
    return true;
  }

  // A platform manifest of pull `state`, before its config: once the policy
  // accepts it, the layers the store has never seen start (speculate),
  // while the config is on its way.
  void manifestSeen(const std::string& key, const Image& image, const std::shared_ptr<fetcher::Puller>& puller,
                    const std::shared_ptr<PullPriority>& priority, const std::shared_ptr<PullState>& state,
                    const ResolvedImage& partial) {
    if (state->planned || state->ended || !everyLayerKnown()) return;
    if (withinImageLimits(key, partial).isError()) return;  // fetchLayers says so
    trustOf(state, image, key, partial.manifest_digest())
        .onReady(actors::defer(self(), [this, key, image, puller, priority, state, partial](const Nothing&) {
          speculate(key, image, puller, priority, state, partial);
        }));
  }

  // Each layer of `partial` whose blob no image here has and no pull has
  // named, downloaded and extracted into staging, unverified against a
  // diffID (none is known yet): fetchLayers takes it for its seed, or
  // dropSpeculations stops it.
  void speculate(const std::string& key, const Image& image, const std::shared_ptr<fetcher::Puller>& puller,
                 const std::shared_ptr<PullPriority>& priority, const std::shared_ptr<PullState>& state,
                 const ResolvedImage& partial) {
    if (state->planned || state->ended) return;
    const auto& layers = partial.manifest().layers();
    auto unknown = [&](const std::string& digest) {
      return knownBlobs_.count(digest) == 0 && speculations_.count(digest) == 0;
    };
    // One layer alone waits when its registry speaks TLS: after the config
    // it takes the config's connection, where started now it would open
    // another, whose handshake (TCP, TLS) costs more round trips than the
    // config's one. Over plain http the new connection costs the one round
    // trip the config's answer would, and the registry's time on the config
    // is saved. With more layers, all but one open connections anyway, and
    // start sooner now.
    std::set<std::string> wanted;
    for (const auto& layer : layers) {
      if (unknown(layer.digest())) wanted.insert(layer.digest());
    }
    if (wanted.empty() || (wanted.size() == 1 && !puller->connectsPlain(partial))) return;
    for (int i = 0; i < layers.size(); ++i) {
      const std::string& digest = layers[i].digest();
      if (!unknown(digest)) continue;
      auto own = std::make_shared<std::atomic<int>>(priority->value->load());
      priority->early.push_back(own);
      StartedLayer layer = startLayer(key, image, puller, partial, static_cast<std::size_t>(i), "", state->budget, own);
      speculations_.emplace(digest, Speculation{state->id, std::move(layer), std::move(own)});
    }
  }

  // The speculations of pull `state` that no layer took, stopped; READY
  // (never FAILED) once each has ended and any tree it staged is gone.
  Future<Nothing> dropSpeculations(const std::shared_ptr<PullState>& state) {
    state->ended = true;
    std::vector<Future<Nothing>> ending;
    for (auto it = speculations_.begin(); it != speculations_.end();) {
      if (it->second.owner != state->id) {
        ++it;
        continue;
      }
      Future<messages::ExtractResult> extraction = it->second.layer.extraction;
      // A tree staged before the discard arrived is nobody's; a failed or
      // discarded extraction removed its own. Out of any discard's reach:
      // whoever stops waiting, the tree goes.
      auto gone = std::make_shared<Promise<Nothing>>();
      ending.push_back(gone->future());
      extraction.onAny([&runtime = runtime_, gone](const Future<messages::ExtractResult>& ended) {
        if (!ended.isReady()) {
          gone->set(Nothing{});
          return;
        }
        removeStaged(runtime, ended.get()).onAny([gone] { gone->set(Nothing{}); });
      });
      extraction.discard();
      it = speculations_.erase(it);
    }
    if (ending.empty()) return Nothing{};
    return actors::undiscardable(actors::await(ending).then([] { return Nothing{}; }));
  }

  Future<ImageInfo> fetchLayers(const std::string& key, const Image& image,
                                const std::shared_ptr<fetcher::Puller>& puller, const std::shared_ptr<PullStats>& stats,
                                const std::shared_ptr<PullPriority>& priority, const std::shared_ptr<PullState>& state,
                                const ResolvedImage& resolved) {
    state->planned = true;
    const auto& layers = resolved.manifest().layers();
    std::vector<std::string> diffIds(resolved.config().diff_ids().begin(), resolved.config().diff_ids().end());
    const bool verifiable = !diffIds.empty();
    if (!verifiable) {  // schema 1: no diffIDs; the blob digests name the layers
      for (const auto& layer : layers) diffIds.push_back(layer.digest());
    }
    if (diffIds.size() != static_cast<std::size_t>(layers.size())) {
      return Error(ErrorKind::Corruption, "Failed to pull '" + key + "': the config lists " +
                                              std::to_string(diffIds.size()) + " diff_ids for " +
                                              std::to_string(layers.size()) + " layers");
    }
    if (auto within = withinImageLimits(key, resolved); within.isError()) return within.error();
    // Where each layer may already be: under its chain id (committed before
    // session 15), or, at the base, under its diff_id (a seed, or a base
    // layer from before).
    const std::vector<std::string> chains = chainIds(diffIds);
    // A layer this pull started early and needs, failed already, fails
    // the pull now, before any other started early is committed: they are
    // dropped. Another failed one is forgotten: started afresh if needed.
    for (std::size_t i = 0; i < chains.size(); ++i) {
      auto speculated = speculations_.find(layers[static_cast<int>(i)].digest());
      if (speculated == speculations_.end() || !speculated->second.layer.extraction.isFailed()) continue;
      const std::string seed = seedFor(diffIds[i]);
      const bool needed = verifiable && committed_.count(chains[i]) == 0 && committed_.count(seed) == 0 &&
                          !layerPulls_.peek(seed);
      if (!needed || speculated->second.owner != state->id) {
        speculations_.erase(speculated);
        continue;
      }
      const Error error = speculated->second.layer.extraction.failure();
      return dropSpeculations(state).then([error]() -> Future<ImageInfo> { return error; });
    }
    // This pull's own (pulls of one key with other credentials run beside it).
    const std::string pullId = state->id;
    inflightConfigs_.emplace(pullId, paths::hexOf(resolved.manifest().config().digest()));
    std::vector<Future<Nothing>> joined, layerWork;
    std::vector<LayerPlan> plan;
    for (const auto& layer : layers) stats->imageBytes += layer.size();
    for (std::size_t i = 0; i < chains.size(); ++i) {
      if (committed_.count(chains[i]) > 0) {
        noteBlob(chains[i], layers[static_cast<int>(i)].digest());
        inflightLayers_.emplace(pullId, chains[i]);
        plan.push_back(LayerPlan{chains[i], true});
        auto reporter = reporterFor(key, layers[static_cast<int>(i)], i);
        if (reporter) reporter->report(LayerProgress::Phase::Cached);
        continue;
      }
      // A base layer from before session 15 holds the seed's own name but
      // keeps neither its whiteouts nor the list of what it implies.
      const std::string seed = seedFor(diffIds[i]);
      noteBlob(seed, layers[static_cast<int>(i)].digest());
      inflightLayers_.emplace(pullId, seed);
      plan.push_back(LayerPlan{seed, false});
      if (committed_.count(seed) > 0) {
        auto reporter = reporterFor(key, layers[static_cast<int>(i)], i);
        if (reporter) reporter->report(LayerProgress::Phase::Cached);
        continue;
      }
      bool started = false;
      priority->layers.push_back(seed);
      auto layerPriority = layerPriorities_.find(seed);
      if (layerPriority != layerPriorities_.end() &&
          actors::raisePriority(*layerPriority->second, priority->value->load())) {
        extractor_->reconsider();
      }
      joined.push_back(layerPulls_.join(seed, [&] {
        started = true;
        std::shared_ptr<std::atomic<int>> own;
        Future<Nothing> layer;
        const std::string expected = verifiable ? diffIds[i] : std::string();
        // Started before the config came (by this pull or another): the
        // diffID is checked at its commit.
        auto speculated = verifiable ? speculations_.find(layers[static_cast<int>(i)].digest()) : speculations_.end();
        if (speculated != speculations_.end()) {
          own = speculated->second.priority;
          if (actors::raisePriority(*own, priority->value->load())) extractor_->reconsider();
          layer = commitLayer(speculated->second.layer, seed, expected);
          speculations_.erase(speculated);
        } else {
          own = std::make_shared<std::atomic<int>>(priority->value->load());
          layer = commitLayer(startLayer(key, image, puller, resolved, i, expected, state->budget, own), seed,
                              expected);
        }
        layerPriorities_[seed] = own;
        layer.onAny(actors::defer(self(), [this, seed, own] {
          auto it = layerPriorities_.find(seed);
          if (it != layerPriorities_.end() && it->second == own) layerPriorities_.erase(it);
        }));
        return layer;
      }));
      // The layer pulls this pull started (not its places in them, nor
      // another pull's): on a failure, the caller hears only once each has
      // ended, committed or its staging removed, so a failed pull leaves
      // nothing behind.
      if (started) {
        if (auto work = layerPulls_.peek(seed)) layerWork.push_back(*work);
        ++stats->fetchedLayers;
        stats->fetchedBytes += layers[static_cast<int>(i)].size();
      }
    }
    // Started ahead and taken by no layer: the layer was here after all,
    // or the config came with another manifest.
    layerWork.push_back(dropSpeculations(state));
    return actors::collect(joined)
        .repair([layerWork](const Future<std::vector<Nothing>>& failed) {
          return actors::await(layerWork).then([failed] { return failed; });
        })
        .then(actors::defer(self(), &Self::placeLayers, pullId, plan))
        .then(actors::defer(self(), &Self::finishPull, key, pullId, resolved, hasOwnCredentials(image)))
        .onAny(actors::defer(self(), [this, pullId] {
          inflightConfigs_.erase(pullId);
          inflightLayers_.erase(pullId);
        }));
  }

  // One layer of a pull, before it is placed: a layer id stored as the
  // chain uses it, or the seed to place on the layers below.
  struct LayerPlan {
    std::string id;
    bool stored = false;
  };

  // Every seed of `plan` is committed: each layer's id in its chain, base
  // first, variants made where the layers below settle the directories a
  // seed implies (placeLayer). One blocking job, run to its end whatever is
  // discarded meanwhile: a variant it made is committed, and known here.
  Future<std::vector<std::string>> placeLayers(const std::string& pullId, const std::vector<LayerPlan>& plan) {
    // What was placed, and why it stopped when it did: the variants made
    // before a failure are known here all the same.
    struct Placed {
      std::vector<Placement> placements;
      std::optional<Error> error;
    };
    Future<Placed> placed = actors::async(runtime_, [plan, dir = options_.storeDir, sync = options_.syncLayers,
                                                     journal = paths::recent(options_.storeDir)] {
      Placed placed;
      std::vector<std::string> below;  // the chain's layers so far, nearest first
      for (const auto& layer : plan) {
        Placement placement{layer.id, false};
        if (!layer.stored) {
          auto found = placeLayer(dir, layer.id, below, sync, journal);
          if (found.isError()) {
            placed.error = found.error();
            break;
          }
          placement = *found;
        }
        below.insert(below.begin(), paths::layerRootfs(dir, placement.id));
        placed.placements.push_back(std::move(placement));
      }
      return placed;
    });
    placed.onReady(actors::defer(self(), [this, pullId](const Placed& done) {
      // Kept from prune until the image is indexed (if the pull is still on).
      const bool pulling = inflightConfigs_.count(pullId) > 0;
      for (const auto& placement : done.placements) {
        committed_.insert(placement.id);
        knownLayers_.insert(placement.id);
        if (pulling) inflightLayers_.emplace(pullId, placement.id);
      }
    }));
    return actors::undiscardable(placed).then([](const Placed& done) -> Future<std::vector<std::string>> {
      if (done.error) return *done.error;
      std::vector<std::string> ids;
      for (const auto& placement : done.placements) ids.push_back(placement.id);
      return ids;
    });
  }

  // The image limits that the manifest alone can tell are passed: the
  // layer count, and the declared (compressed) sizes.
  Try<Nothing> withinImageLimits(const std::string& key, const ResolvedImage& resolved) const {
    const auto& layers = resolved.manifest().layers();
    const ExtractLimits& limits = options_.limits;
    if (static_cast<std::uint64_t>(layers.size()) > limits.maxImageLayers) {
      return Error(ErrorKind::ResourceExhausted,
                   "Failed to pull '" + key + "': it has " + std::to_string(layers.size()) + " layers, more than " +
                       std::to_string(limits.maxImageLayers) + " (the image layer limit, --max_image_layers)");
    }
    std::uint64_t declared = 0;
    for (const auto& layer : layers) {
      if (layer.size() < 0) continue;
      if (static_cast<std::uint64_t>(layer.size()) > limits.maxLayerBytes) {
        return Error(ErrorKind::ResourceExhausted, "Failed to pull '" + key + "': its layer '" + layer.digest() +
                                                       "' is " + std::to_string(layer.size()) + " bytes, more than " +
                                                       std::to_string(limits.maxLayerBytes) +
                                                       " (the layer size limit, --max_layer_bytes)");
      }
      declared += static_cast<std::uint64_t>(layer.size());
    }
    if (declared > limits.maxImageBytes) {
      return Error(ErrorKind::ResourceExhausted, "Failed to pull '" + key + "': its layers are " +
                                                     std::to_string(declared) + " bytes compressed, more than " +
                                                     std::to_string(limits.maxImageBytes) +
                                                     " (the image size limit, --max_image_bytes)");
    }
    return Nothing{};
  }

  Future<ImageInfo> finishPull(const std::string& key, const std::string& pullId, const ResolvedImage& resolved,
                               bool credentialed, const std::vector<std::string>& ids) {
    StoredImage image;
    image.set_key(key);
    image.set_access(credentialed ? StoredImage::ACCESS_CREDENTIALED : StoredImage::ACCESS_PUBLIC);
    *image.mutable_reference() = resolved.reference();
    image.set_manifest_digest(resolved.manifest_digest());
    image.set_config_digest(resolved.config_json().empty() ? "" : resolved.manifest().config().digest());
    for (const auto& id : ids) image.add_layer_ids(id);
    for (const auto& layer : resolved.manifest().layers()) image.add_layer_digests(layer.digest());
    *image.mutable_config() = resolved.config();
    image.set_pulled_at(static_cast<std::int64_t>(std::time(nullptr)));
    image.set_last_used_at(image.pulled_at());
    Future<Nothing> config = Nothing{};
    if (!image.config_digest().empty()) {
      const std::string path = configPath(image);
      configFiles_.insert(paths::hexOf(image.config_digest()));
      config = actors::async(runtime_,
                             [path, json = resolved.config_json()] { return writeFileAtomically(path, json); });
    }
    if (images_.count(key) > 0 || otherPullOf(key, pullId)) {
      // An image already indexed: its entry is replaced only once the new
      // config is down, so the old entry stays whole, on disk and after a
      // crash. Another pull of the key (with other credentials) may index
      // it meanwhile: the same order keeps the two from undoing each other.
      // Once the entry is asked for, it is waited for and taken in, even
      // if the pull is discarded meanwhile: the index on disk and this
      // store's memory agree.
      return config.then(actors::defer(self(), [this, image] {
        return actors::undiscardable(metadata_.put(image).then(actors::defer(self(), &Self::indexed)));
      }));
    }
    // A new image, pulled once: its config and its entry are written at
    // once (their syncs overlap). Both run to their end and are taken in,
    // even if the pull is discarded meanwhile (a discard would otherwise
    // drop the config's write and keep the entry's). Recover keeps an
    // entry only when its config is on disk (keepCompleteImages), so a
    // crash cannot leave one without the other; an entry whose config
    // failed is taken out again.
    return actors::undiscardable(
        actors::await(config, metadata_.put(image))
            .then(actors::defer(self(), [this, key](const std::tuple<Future<Nothing>, Future<StoredImage>>& written) {
              const auto& [configWritten, entry] = written;
              return indexedWithConfig(key, configWritten, entry);
            })));
  }

  // Whether a pull of `key` other than `pullId` is in flight.
  bool otherPullOf(const std::string& key, const std::string& pullId) const {
    const std::string prefix = key + "#";
    for (const auto& [id, config] : inflightConfigs_) {
      if (id != pullId && id.starts_with(prefix)) return true;
    }
    return false;
  }

  Future<ImageInfo> indexedWithConfig(const std::string& key, const Future<Nothing>& config,
                                      const Future<StoredImage>& entry) {
    if (config.isReady() && entry.isReady()) {
      // A later pull of the key (other credentials; its entry was asked
      // for after this one's) may have been taken in first: its entry is
      // the one on disk, and stays.
      if (images_.count(key) > 0) return infoOf(entry.get());
      return indexed(entry.get());
    }
    if (config.isReady()) return failureOf(entry, "the image index's write");
    // The entry out again (from the index's memory too, where a failed
    // write may have left it), or, if that fails, by the next recover (no
    // config). Another pull of the key (other credentials) that indexed it
    // meanwhile put its entry before this removal (the index runs its
    // requests in order, and this strand hears of them in that order): it
    // goes back.
    const Error error = failureOf(config, "the image config's write");
    return metadata_.remove({key})
        .recover([](const Future<Nothing>&) { return Nothing{}; })
        .then(actors::defer(self(), [this, key, error]() -> Future<ImageInfo> {
          auto indexedMeanwhile = images_.find(key);
          if (indexedMeanwhile == images_.end()) return error;
          return metadata_.put(indexedMeanwhile->second)
              .recover([key](const Future<StoredImage>& failed) {
                actors::log(actors::LogLevel::Warn, "store.index_restore_failed",
                            {{"image", key},
                             {"error", failed.isFailed() ? failed.failure().message : "discarded"},
                             {"then", "served from memory; the next index write or recover settles it"}});
                return StoredImage();
              })
              .then([error]() -> Future<ImageInfo> { return error; });
        }));
  }

  template <typename T>
  static Error failureOf(const Future<T>& done, const std::string& what) {
    return done.isFailed() ? done.failure() : Error(ErrorKind::Cancelled, what + " was discarded");
  }

  ImageInfo indexed(const StoredImage& stored) {
    images_[stored.key()] = stored;
    served_.erase(stored.key());
    return infoOf(stored);
  }

  // ---- one layer ------------------------------------------------------------

  // Null without a progress callback.
  std::shared_ptr<LayerReporter> reporterFor(const std::string& key, const messages::Descriptor& blob,
                                             std::size_t position) const {
    if (!options_.progress) return nullptr;
    LayerProgress event{key, blob.digest(), blob.size(), 0, LayerProgress::Phase::Waiting, static_cast<int>(position)};
    return std::make_shared<LayerReporter>(options_.progress, std::move(event));
  }

  // Layer `i` of a pull, downloading and extracting into staging (its
  // whiteouts kept, whatever its place in a chain: the seed serves every
  // chain), checked against `diffId` unless empty.
  StartedLayer startLayer(const std::string& key, const Image& image, const std::shared_ptr<fetcher::Puller>& puller,
                          const ResolvedImage& resolved, std::size_t i, const std::string& diffId,
                          const std::shared_ptr<ByteBudget>& budget,
                          const std::shared_ptr<std::atomic<int>>& priority) {
    const messages::Descriptor blob = resolved.manifest().layers(static_cast<int>(i));
    const std::string what = "layer '" + blob.digest() + "' of '" + fetcher::toString(resolved.reference()) + "'";
    messages::ExtractRequest request;
    request.set_format(messages::ExtractRequest::LAYER);
    request.set_what(what);
    *request.mutable_layer() = blob;
    request.set_expected_diff_id(diffId);
    request.set_staging_parent(paths::staging(options_.storeDir));
    *request.mutable_limits() = toMessage(options_.limits);
    auto reporter = reporterFor(key, blob, i);
    if (reporter) reporter->report(LayerProgress::Phase::Waiting);
    ExtractProgressFn progress;
    if (reporter) progress = [reporter](const ExtractProgress& event) { reporter->extraction(event); };
    return StartedLayer{extractLayer(request, image, puller, resolved, progress, budget, priority, 0), reporter};
  }

  // `layer` committed as the seed `seedId`, once staged and its diffID
  // found to be `diffId` (when not empty).
  Future<Nothing> commitLayer(const StartedLayer& layer, const std::string& seedId, const std::string& diffId) {
    const std::string layerDir = paths::layer(options_.storeDir, seedId);
    auto reporter = layer.reporter;
    // Once staged, the tree is committed or removed, whatever is discarded
    // meanwhile: the commit is one undiscardable step (a discard reaching a
    // `then` of it as its source completes would skip the step, and leave
    // the tree in staging).
    Future<Nothing> pulled = afterExtraction(
        runtime_, layer.extraction,
        [&runtime = runtime_, layerDir, diffId, sync = options_.syncLayers,
         journal = paths::recent(options_.storeDir)](const messages::ExtractResult& s) {
          return actors::undiscardable(actors::async(runtime, [s, layerDir, diffId, sync, journal]() -> Try<Nothing> {
            if (!diffId.empty() && s.content_id() != diffId) {
              (void)actors::fs::removeTree(s.staging_dir());
              return diffIdMismatch(s.what(), s.content_id(), diffId);
            }
            const std::vector<std::string> implied(s.implied_dirs().begin(), s.implied_dirs().end());
            auto committed = commitSeed(s.staging_dir(), s.rootfs(), implied, layerDir, sync, journal);
            if (committed.isError()) (void)actors::fs::removeTree(s.staging_dir());
            return committed;
          }));
        });
    // Also when the pull was discarded meanwhile: the layer is there.
    pulled.onReady(actors::defer(self(), &Self::layerCommitted, seedId, reporter));
    if (reporter) {
      pulled.onFailed(actors::defer(self(), [reporter] { reporter->report(LayerProgress::Phase::Failed); }));
    }
    return pulled;
  }

  // One layer blob extracted into a fresh staging directory, from source
  // `first` on. A source that broke after sending bytes is not spliced with
  // the next (BlobSources): the failed extraction removed its staging, and
  // the layer starts over from nothing at the next source.
  Future<messages::ExtractResult> extractLayer(const messages::ExtractRequest& request, const Image& image,
                                               const std::shared_ptr<fetcher::Puller>& puller,
                                               const ResolvedImage& resolved, const ExtractProgressFn& progress,
                                               const std::shared_ptr<ByteBudget>& budget,
                                               const std::shared_ptr<std::atomic<int>>& priority, std::size_t first) {
    auto sources = std::make_shared<fetcher::BlobSources>(first);
    // The download queues (per registry) by the layer's priority as it is
    // when the extractor admits it.
    Feed feed = [image, puller, resolved, blob = request.layer(), sources,
                 priority](const std::string&, const std::shared_ptr<fetcher::ByteSink>& sink) {
      Image now = image;
      now.set_priority(priority->load());
      return puller->fetchBlob(now, resolved, blob, sink, sources).then([] { return Fed{}; });
    };
    messages::ExtractRequest queued = request;
    queued.set_priority(priority->load());
    return extractor_->extract(queued, std::move(feed), progress, budget, priority)
        .repair(actors::defer(self(),
                              [this, request, image, puller, resolved, progress, budget, priority, sources](
                                  const Future<messages::ExtractResult>& failed) -> Future<messages::ExtractResult> {
                                const auto next = sources->restartAt();
                                if (!next || !restartable(failed.failure().kind)) return failed;
                                return extractLayer(request, image, puller, resolved, progress, budget, priority,
                                                    *next);
                              }));
  }

  // What a source's bad bytes or broken connection look like; another
  // source may do better. Limits, disk errors and discards would not.
  static bool restartable(ErrorKind kind) {
    return kind == ErrorKind::Unavailable || kind == ErrorKind::Timeout || kind == ErrorKind::Corruption ||
           kind == ErrorKind::DigestMismatch;
  }

  void layerCommitted(const std::string& id, const std::shared_ptr<LayerReporter>& reporter) {
    committed_.insert(id);
    knownLayers_.insert(id);
    if (reporter) reporter->report(LayerProgress::Phase::Done);
  }

  actors::Runtime& runtime_;
  const ImageStoreOptions options_;
  const PullerFor pullerFor_;
  MetadataManager metadata_;
  std::map<std::string, StoredImage> images_;  // drop its served_ entry with each change
  std::map<std::string, Served> served_;       // by key: made by the first get since the entry changed
  // onDisk()'s looks at the disk under way, by the paths they look at.
  actors::SharedWork<std::vector<bool>> presenceChecks_;
  std::set<std::string> committed_;                          // layer ids in layers/
  std::set<std::string> unmarked_;                           // those from before session 15 (no implied file)
  std::set<std::string> retired_;                            // layer ids retired: on disk, never handed out
  std::set<std::string> configFiles_;                        // names in configs/
  ContentSizes sizes_;                                       // of the layers, once read
  std::multimap<std::string, std::string> inflightConfigs_;  // pull id -> config hex
  std::multimap<std::string, std::string> inflightLayers_;   // pull id -> layer ids it needs
  std::uint64_t pullSerial_ = 0;
  // Blob digests of the layers the indexed images hold (those written since
  // session 23) and of every layer a pull here planned, until a prune finds
  // the layer gone (forgetGoneBlobs): a blob not among them may be started
  // before its config (speculate).
  std::set<std::string> knownBlobs_;
  std::map<std::string, std::set<std::string>> seedBlobs_;  // by seed: the blobs in knownBlobs_ that hold it
  std::set<std::string> knownLayers_;                       // layer ids whose blob is in knownBlobs_ (any stored since)
  std::map<std::string, Speculation> speculations_;         // by blob digest
  actors::SharedWork<ImageInfo> pulls_;
  actors::SharedWork<Nothing> layerPulls_;
  std::map<std::string, std::shared_ptr<PullPriority>> pullPriorities_;       // by shared pull key
  std::map<std::string, std::shared_ptr<std::atomic<int>>> layerPriorities_;  // by seed id, while pulled
  GarbageCollector gc_;
  // Every layer downloads and extracts through it (shared with the other
  // stores when the options give one).
  const std::shared_ptr<Extractor> extractor_;
};

template class ProcessStore<ImageStoreProcess>;

Try<std::unique_ptr<ImageStore>> ImageStore::create(actors::Runtime& runtime, ImageStoreOptions options,
                                                    PullerFor pullerFor) {
  if (options.storeDir.empty()) return Error(ErrorKind::InvalidArgument, "The image store needs a directory");
  auto made = makeStoreDirectories(options.storeDir, paths::directories(options.storeDir));
  if (made.isError()) return made.error();
  auto process = std::make_unique<ImageStoreProcess>(runtime, std::move(options), std::move(pullerFor));
  return std::unique_ptr<ImageStore>(new ImageStore(std::move(process), runtime));
}

ImageStore::ImageStore(std::unique_ptr<ImageStoreProcess> process, actors::Runtime& runtime)
    : ProcessStore(runtime, std::move(process)) {}

// ProcessOwner lets a gc/ sweep in the background finish first (quiesce()):
// the directory it deletes in may go away with the store's owner.
ImageStore::~ImageStore() = default;

Try<std::string> ImageStore::keyOf(const messages::Image& image) const { return imageKey(image); }

Future<std::string> ImageStore::recoveryWarning() { return process_.dispatch(&ImageStoreProcess::recoveryWarning); }

}  // namespace prov::store
