#include "store/appc_store.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <ctime>
#include <map>
#include <sstream>

#include "actors/async.hpp"
#include "actors/collect.hpp"
#include "actors/defer.hpp"
#include "actors/disk.hpp"
#include "actors/dispatch.hpp"
#include "actors/fs.hpp"
#include "actors/log.hpp"
#include "actors/process.hpp"
#include "actors/runtime.hpp"
#include "actors/shared_work.hpp"
#include "store/aci.hpp"
#include "store/atomic_file.hpp"
#include "store/content_sizes.hpp"
#include "store/extractor.hpp"
#include "store/gc.hpp"
#include "store/layer_disk.hpp"
#include "store/metadata_manager.hpp"
#include "store/paths.hpp"
#include "store/process_store_impl.hpp"

namespace prov::store {

using actors::Future;
using actors::Promise;
using messages::AppcImage;
using messages::AppcManifest;
using messages::Image;
using messages::StoredImage;

namespace {

// What a fetch made: the image's id and manifest.
struct Fetched {
  std::string id;
  AppcManifest manifest;
  bool unsettled = false;  // has an implied file
};

struct Found {
  std::map<std::string, AppcManifest> images;  // id -> manifest
  std::set<std::string> unsettled;             // ids with an implied file
  std::vector<std::string> dropped;            // why some were removed
};

// The store's directories made, staging/ and gc/ emptied, every image with
// a readable manifest listed; the others are moved into gc/ and swept.
Try<Found> scanStore(const std::string& store) {
  auto made = makeStoreDirectories(store, paths::appc::directories(store));
  if (made.isError()) return made.error();
  auto staged = emptyDirectory(paths::staging(store));
  if (staged.isError()) return staged.error();
  if (auto removed = removeStaleTemporaries(store); removed.isError()) return removed.error();
  Found found;
  std::vector<std::string> broken;
  for (const auto& id : actors::fs::listDirectory(paths::appc::images(store))) {
    auto bytes = actors::fs::readFile(paths::appc::manifest(store, id));
    auto manifest = fetcher::parseAppcManifest(bytes.isSome() ? *bytes : std::string(), "image '" + id + "'");
    struct stat st {};
    const bool hasRootfs = ::stat(paths::appc::rootfs(store, id).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    if (fetcher::validateAppcImageId(id, "").isError() || manifest.isError() || !hasRootfs) {
      broken.push_back(paths::appc::image(store, id));
      found.dropped.push_back(id);
      continue;
    }
    if (::stat(paths::appc::implied(store, id).c_str(), &st) == 0) found.unsettled.insert(id);
    // A usage file whose write a crash cut short.
    if (auto removed = removeStaleTemporaries(paths::appc::image(store, id)); removed.isError()) return removed.error();
    found.images.emplace(id, std::move(*manifest));
  }
  auto marked = markForGc(store, broken);
  if (marked.isError()) return marked.error();
  auto swept = sweepGc(store);
  if (swept.isError()) return swept.error();
  return found;
}

// The ACI extracted for `query` (`extracted`) checked against what was
// asked for, and its staging directory renamed into images/<id>.
Try<Fetched> commitAci(const AppcImage& query, const messages::ExtractResult& extracted, const std::string& store,
                       bool sync) {
  const std::string& what = extracted.what();
  const AppcManifest& manifest = extracted.appc_manifest();
  if (manifest.name() != query.name()) {
    return Error(ErrorKind::InvalidArgument,
                 "Invalid " + what + ": its manifest names '" + manifest.name() + "', not '" + query.name() + "'");
  }
  for (const char* label : {"os", "arch"}) {
    auto own = manifest.labels().find(label);
    const std::string& asked = query.labels().at(label);
    if (own != manifest.labels().end() && own->second != asked) {
      return Error(ErrorKind::InvalidArgument, "Invalid " + what + ": its manifest says " + label + " '" + own->second +
                                                   "', not '" + asked + "' as asked for");
    }
  }
  if (!query.id().empty() && extracted.content_id() != query.id()) {
    return Error(ErrorKind::DigestMismatch, "Invalid " + what + ": its id is '" + extracted.content_id() + "', not '" +
                                                query.id() + "' as asked for");
  }
  const std::string& staging = extracted.staging_dir();
  auto written = writeFileAtomically(paths::appc::manifestIn(staging), extracted.appc_manifest_json());
  if (written.isError()) return written.error();
  std::string implied;
  for (const auto& dir : extracted.implied_dirs()) implied += dir + "\n";
  if (!implied.empty()) {
    written = writeFileAtomically(paths::appc::impliedIn(staging), implied, sync);
    if (written.isError()) return written.error();
  }
  auto committed = commitLayer(staging, extracted.rootfs(), {}, {}, paths::appc::image(store, extracted.content_id()),
                               sync);
  if (committed.isError()) return committed.error();
  return Fetched{extracted.content_id(), manifest, !implied.empty()};
}

// The directories image `id` only implies (its implied file) settled
// against `below` (its dependencies' rootfses, nearest first); the file then
// goes.
Try<Nothing> settleImage(const std::string& store, const std::string& id, const std::vector<std::string>& below,
                         bool sync) {
  const std::string file = paths::appc::implied(store, id);
  auto text = actors::fs::readFile(file);
  std::istringstream in(text.isSome() ? *text : std::string());
  std::vector<std::string> implied;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) implied.push_back(line);
  }
  auto settled = settleImpliedDirs(paths::appc::rootfs(store, id), implied, below, sync);
  if (settled.isError()) return settled.error();
  if (actors::fs::disk().unlinkat(AT_FDCWD, file.c_str(), 0) != 0 && errno != ENOENT) {
    return Error(ErrorKind::IO, "Failed to remove '" + file + "': " + std::strerror(errno));
  }
  return Nothing{};
}

}  // namespace

class AppcStoreProcess : public actors::Process<AppcStoreProcess> {
 public:
  AppcStoreProcess(actors::Runtime& runtime, AppcStoreOptions options, std::shared_ptr<fetcher::AppcFetcher> fetcher)
      : actors::Process<AppcStoreProcess>("appc-store"), runtime_(runtime), options_(std::move(options)),
        fetcher_(std::move(fetcher)), metadata_(runtime, paths::appc::index(options_.storeDir)),
        gc_(runtime, options_.storeDir),
        extractor_(options_.extractor ? options_.extractor : std::make_shared<Extractor>(runtime)) {}

  void initialize() override {
    fetches_.setPost([pid = self()](std::function<void()> f) { actors::defer(pid, std::move(f))(); });
  }

  Future<Nothing> recover() {
    return actors::async(runtime_, [dir = options_.storeDir] { return scanStore(dir); })
        .then(actors::defer(self(), &Self::loadIndex));
  }

  Future<ImageInfo> get(const Image& image) {
    if (image.type() != Image::APPC) {
      return Error(ErrorKind::Unsupported, "The AppC store only serves AppC images");
    }
    auto query = fetcher::withDefaultLabels(image.appc());
    if (query.isError()) return query.error();
    const bool cached = !image.has_cached() || image.cached();
    const std::string key = fullKey(*query);
    // A cached image comes from the index whole, dependencies included.
    if (cached) {
      auto it = index_.find(key);
      if (it != index_.end() && complete(it->second)) {
        touchLastUse(it->second, metadata_);
        return infoOf(it->second);
      }
    }
    const std::uint64_t serial = ++gets_;
    busy_[serial];
    auto resolution = std::make_shared<Resolution>();
    resolution->priority = image.priority();
    return resolve(*query, cached, {}, serial, resolution)
        .then(actors::defer(self(), &Self::remember, key))
        .then(actors::defer(self(), &Self::infoOf))
        .onAny(actors::defer(self(), [this, serial, resolution] {
          busy_.erase(serial);
          resolution->resolved.clear();  // its futures hold it: let go
        }));
  }

  static Try<std::string> keyOf(const Image& image) {
    if (image.type() != Image::APPC) return Error(ErrorKind::Unsupported, "The AppC store only holds AppC images");
    auto query = fetcher::withDefaultLabels(image.appc());
    if (query.isError()) return query.error();
    return fullKey(*query);
  }

  Future<Nothing> prune(const std::vector<Image>& excluded, const std::set<std::string>& activePaths) {
    std::set<std::string> keep;
    for (const auto& image : excluded) {
      if (auto key = keyOf(image); key.isSome()) keep.insert(*key);
    }
    std::vector<std::string> forget;
    for (const auto& [key, entry] : index_) {
      bool inUse = entry.appc().image_ids_size() > 0;
      for (const auto& id : entry.appc().image_ids()) {
        inUse = inUse && activePaths.count(paths::appc::rootfs(options_.storeDir, id)) > 0;
      }
      if (keep.count(key) == 0 && !inUse) forget.push_back(key);
    }
    return forgetAndCollect(forget, activePaths);
  }

  Future<Nothing> remove(const std::vector<std::string>& keys, const std::set<std::string>& activePaths) {
    return forgetAndCollect(keysIn(index_, keys), activePaths);
  }

  // The index without `forget`; then every image that no entry left, no
  // path in `activePaths` and no running get uses goes to gc/.
  Future<Nothing> forgetAndCollect(const std::vector<std::string>& forget, const std::set<std::string>& activePaths) {
    for (const auto& key : forget) index_.erase(key);
    std::set<std::string> used;
    for (const auto& [key, entry] : index_)
      used.insert(entry.appc().image_ids().begin(), entry.appc().image_ids().end());
    for (const auto& [serial, ids] : busy_) used.insert(ids.begin(), ids.end());
    std::vector<std::string> doomed;
    for (const auto& [id, manifest] : manifests_) {
      if (used.count(id) == 0 && activePaths.count(paths::appc::rootfs(options_.storeDir, id)) == 0 &&
          activePaths.count(paths::appc::manifest(options_.storeDir, id)) == 0) {
        doomed.push_back(id);
      }
    }
    std::vector<std::string> dirs;
    std::map<std::string, AppcManifest> removed;
    for (const auto& id : doomed) {
      sizes_.forget(paths::appc::rootfs(options_.storeDir, id));
      removed.insert(manifests_.extract(id));
      dirs.push_back(paths::appc::image(options_.storeDir, id));
    }
    Future<Nothing> forgotten = forget.empty() ? Future<Nothing>(Nothing{}) : metadata_.remove(forget);
    return gc_.collect(forgotten, dirs).recover(actors::defer(self(), &Self::pruneFailed, removed, dirs));
  }

  // A prune that failed part way: the images it did not move into gc/ are
  // still in the store, and the next prune must see them to remove them.
  Future<Nothing> pruneFailed(const std::map<std::string, AppcManifest>& removed, const std::vector<std::string>& dirs,
                              const Future<Nothing>& pruned) {
    return gc_.leftBehind(dirs).then(
        actors::defer(self(), [this, removed, pruned](const std::vector<std::string>& left) {
          for (const auto& dir : left) manifests_.emplace(paths::baseName(dir), removed.at(paths::baseName(dir)));
          return pruned;
        }));
  }

  // The index entry for `key`: the image `ids` end with, made of `ids`.
  Future<StoredImage> remember(const std::string& key, const std::vector<std::string>& ids) {
    auto top = manifests_.find(ids.back());
    if (top == manifests_.end()) {
      return Error(ErrorKind::Unavailable, "AppC image '" + ids.back() + "' was removed while in use");
    }
    StoredImage stored;
    stored.set_key(key);
    stored.mutable_appc()->set_id(ids.back());
    for (const auto& id : ids) stored.mutable_appc()->add_image_ids(id);
    *stored.mutable_config() = fetcher::appcRuntimeConfig(top->second);
    stored.set_pulled_at(static_cast<std::int64_t>(std::time(nullptr)));
    stored.set_last_used_at(stored.pulled_at());
    index_[key] = stored;
    return metadata_.put(stored);
  }

  Future<Nothing> swept() { return gc_.quiesce(); }
  // The sweeps, then the index's writes (a get or a touch moves a last use
  // and does not wait for its write).
  Future<Nothing> quiesce() {
    return gc_.quiesce().then(actors::defer(self(), [this] { return metadata_.quiesce(); }));
  }

  std::vector<StoredImage> images() {
    std::vector<StoredImage> all;
    for (const auto& [key, entry] : index_) all.push_back(entry);
    return all;
  }

  Nothing touch(const std::vector<std::string>& keys) {
    for (const auto& key : keys) {
      if (auto it = index_.find(key); it != index_.end()) touchLastUse(it->second, metadata_);
    }
    return Nothing{};
  }

  // Repair is built for Docker/OCI images only.
  Future<Nothing> discard(const std::vector<std::string>&) { return repairUnsupported(); }
  Future<Nothing> retire(const std::vector<std::string>&) { return repairUnsupported(); }
  Future<std::string> lookUp(const messages::Image&) { return repairUnsupported(); }
  static Error repairUnsupported() {
    return Error(ErrorKind::Unsupported,
                 "Repair of AppC images is not built: remove the image (prune) and fetch it again");
  }

  Future<StoreCheck> verify(const std::vector<std::string>& keys) {
    return checkImages(runtime_, self(), options_.storeDir, index_, keys,
                       [this](const StoredImage& image) { return infoOf(image); });
  }

  Future<StoreUsage> usage() {
    StoreUsage usage;
    usage.directory = options_.storeDir;
    for (const auto& [key, entry] : index_) {
      usage.images.push_back(entry);
      usage.contentOf[key] = infoOf(entry).layers;
    }
    std::vector<std::string> rootfses;
    for (const auto& [id, manifest] : manifests_) rootfses.push_back(paths::appc::rootfs(options_.storeDir, id));
    return sizes_.fill(runtime_, self(), usage, rootfses, [this](const std::string& rootfs) {
      return manifests_.count(paths::baseName(rootfs.substr(0, rootfs.rfind('/')))) > 0;
    });
  }

 private:
  ImageInfo infoOf(const StoredImage& stored) const {
    ImageInfo info;
    info.image = stored;
    for (const auto& id : stored.appc().image_ids()) {
      info.layers.push_back(paths::appc::rootfs(options_.storeDir, id));
    }
    info.configPath = paths::appc::manifest(options_.storeDir, stored.appc().id());
    return info;
  }

  // ---- recover ----------------------------------------------------------------

  Future<Nothing> loadIndex(const Found& found) {
    manifests_ = found.images;
    unsettled_ = found.unsettled;
    return metadata_.recover().then(actors::defer(self(), &Self::keepCompleteEntries));
  }

  // The index cut to the entries whose images are all there; entries in the
  // former layout (AppC ids in the sha256 fields) moved into StoredImage::appc.
  Future<Nothing> keepCompleteEntries(const std::vector<StoredImage>& entries) {
    index_.clear();
    std::vector<std::string> gone;
    std::vector<Future<StoredImage>> migrated;
    for (StoredImage entry : entries) {
      const bool old = migrateEntry(entry);
      if (!complete(entry)) {
        gone.push_back(entry.key());
        continue;
      }
      index_[entry.key()] = entry;
      // Best effort: the entry is migrated again at the next recover.
      if (old) migrated.push_back(metadata_.put(entry).recover([entry](const Future<StoredImage>&) { return entry; }));
    }
    return actors::collect(migrated).then(actors::defer(self(), [this, gone](const std::vector<StoredImage>&) {
      return gone.empty() ? Future<Nothing>(Nothing{}) : metadata_.remove(gone);
    }));
  }

  // Until session 5 an entry kept the image's id in manifest_digest and the
  // ids it is made of in layer_ids. True when `entry` was in that layout
  // (and is now in StoredImage::appc).
  static bool migrateEntry(StoredImage& entry) {
    if (entry.has_appc() || entry.layer_ids_size() == 0) return false;
    auto* appc = entry.mutable_appc();
    appc->set_id(entry.manifest_digest());
    appc->mutable_image_ids()->Swap(entry.mutable_layer_ids());
    entry.clear_manifest_digest();
    return true;
  }

  // One get's walk over the dependency tree: each image resolved once
  // however many paths lead to it, and a bound on how many there are.
  struct Resolution {
    std::map<std::string, Future<std::vector<std::string>>> resolved;  // full key -> ids
    std::size_t images = 0;
    int priority = 0;  // the request's (Image.priority), for every fetch of its tree
  };

  // The ids making `query`'s image: its dependencies' (recursively, each
  // once) and then its own. `chain` holds the full keys and ids above it.
  Future<std::vector<std::string>> resolve(const AppcImage& query, bool cached, std::vector<std::string> chain,
                                           std::uint64_t serial, const std::shared_ptr<Resolution>& resolution) {
    const std::string key = fullKey(query);
    if (std::find(chain.begin(), chain.end(), key) != chain.end()) return cycleError(chain, key);
    if (auto done = resolution->resolved.find(key); done != resolution->resolved.end()) return done->second;
    if (++resolution->images > options_.limits.maxImageLayers) {
      return Error(ErrorKind::ResourceExhausted,
                   "AppC image '" + chain.front().substr(5) + "' has more than " +
                       std::to_string(options_.limits.maxImageLayers) +
                       " images in its dependency tree (the image layer limit, --max_image_layers)");
    }
    chain.push_back(key);
    Future<std::vector<std::string>> ids = fetchImage(query, cached, serial, resolution->priority)
                                               .then(actors::defer(self(), &Self::resolveDependencies, cached, chain,
                                                                   serial, resolution));
    resolution->resolved.emplace(key, ids);
    return ids;
  }

  // `id` (fetched for the last key of `chain`) after its dependencies, each
  // resolved as resolve() does, and settled against them.
  Future<std::vector<std::string>> resolveDependencies(bool cached, std::vector<std::string> chain,
                                                       std::uint64_t serial,
                                                       const std::shared_ptr<Resolution>& resolution,
                                                       const std::string& id) {
    if (std::find(chain.begin(), chain.end(), id) != chain.end()) return cycleError(chain, id);
    chain.push_back(id);
    auto own = manifests_.find(id);
    if (own == manifests_.end()) {
      return Error(ErrorKind::Unavailable, "AppC image '" + id + "' was removed while in use");
    }
    const AppcManifest& manifest = own->second;
    const std::string what = "Failed to resolve the dependencies of AppC image '" + manifest.name() + "'";
    std::vector<Future<std::vector<std::string>>> dependencies;
    std::set<std::string> listed;
    for (const auto& dependency : manifest.dependencies()) {
      auto query = fetcher::withDefaultLabels(fetcher::dependencyImage(dependency));
      if (query.isError()) return query.error().withContext(what);
      if (!listed.insert(fullKey(*query)).second) continue;  // listed twice
      dependencies.push_back(resolve(*query, cached, chain, serial, resolution));
    }
    return actors::collect(dependencies)
        .then([id](const std::vector<std::vector<std::string>>& lists) { return mergeIds(lists, id); })
        .then(actors::defer(self(), &Self::settle))
        .repair([what](const Future<std::vector<std::string>>& failed) -> Future<std::vector<std::string>> {
          const Error& error = failed.failure();
          if (error.message.starts_with("Failed to resolve the dependencies of")) return error;
          return error.withContext(what);
        });
  }

  // The dependencies' ids in order, each once, then `id`.
  static std::vector<std::string> mergeIds(const std::vector<std::vector<std::string>>& lists, const std::string& id) {
    std::vector<std::string> ids;
    std::set<std::string> seen;
    for (const auto& list : lists) {
      for (const auto& each : list) {
        if (seen.insert(each).second) ids.push_back(each);
      }
    }
    if (seen.insert(id).second) ids.push_back(id);
    return ids;
  }

  // The directories the top of `ids` only implies take their owner, mode
  // and times from its dependencies (the rest of `ids`, nearest last), once.
  Future<std::vector<std::string>> settle(const std::vector<std::string>& ids) {
    const std::string id = ids.back();
    if (unsettled_.count(id) == 0) return ids;
    std::vector<std::string> below;
    for (auto it = ids.rbegin() + 1; it != ids.rend(); ++it)
      below.push_back(paths::appc::rootfs(options_.storeDir, *it));
    return actors::async(runtime_, [store = options_.storeDir, id, below,
                                    sync = options_.syncImages] { return settleImage(store, id, below, sync); })
        .then(actors::defer(self(), [this, ids, id] {
          unsettled_.erase(id);
          return ids;
        }));
  }

  static Error cycleError(const std::vector<std::string>& chain, const std::string& again) {
    std::string path;
    for (const auto& step : chain) {
      if (step.starts_with("appc:")) path += step.substr(5) + " -> ";
    }
    return Error(ErrorKind::InvalidArgument,
                 "AppC image dependency cycle: " + path + (again.starts_with("appc:") ? again.substr(5) : again));
  }

  // The index key: name and labels, and the id when one was asked for.
  static std::string fullKey(const AppcImage& query) {
    return fetcher::appcKey(query) + (query.id().empty() ? "" : "@" + query.id());
  }

  bool complete(const StoredImage& entry) const {
    if (entry.appc().image_ids_size() == 0) return false;
    for (const auto& id : entry.appc().image_ids()) {
      if (manifests_.count(id) == 0) return false;
    }
    return true;
  }

  // One image (without its dependencies): from the store when it is there,
  // else fetched once for everyone asking. Its id is held for `serial`
  // (against prune) in the same turn it becomes known.
  Future<std::string> fetchImage(const AppcImage& query, bool cached, std::uint64_t serial, int priority) {
    auto hold = [this, serial](const std::string& id) {
      if (auto held = busy_.find(serial); held != busy_.end()) held->second.insert(id);
      return id;
    };
    if (!query.id().empty()) {
      auto it = manifests_.find(query.id());
      if (it != manifests_.end() && it->second.name() == query.name()) return hold(query.id());
    } else if (cached) {
      const std::string key = fullKey(query);
      if (auto alias = aliases_.find(key); alias != aliases_.end() && manifests_.count(alias->second) > 0) {
        return hold(alias->second);
      }
      if (auto it = index_.find(key); it != index_.end() && complete(it->second)) {
        return hold(it->second.appc().id());
      }
      // An image in images/ whose manifest has the name and every label
      // asked for (one put there by hand, or fetched under another query);
      // the most recently stored first.
      const AppcManifest* best = nullptr;
      std::string bestId;
      for (const auto& [id, manifest] : manifests_) {
        if (manifest.name() != query.name()) continue;
        bool match = true;
        for (const auto& [label, value] : query.labels()) {
          auto own = manifest.labels().find(label);
          match = match && own != manifest.labels().end() && own->second == value;
        }
        if (match && (best == nullptr || storedAt_[id] > storedAt_[bestId])) {
          best = &manifest;
          bestId = id;
        }
      }
      if (best != nullptr) return hold(bestId);
    }
    const std::string key = fullKey(query);
    // One priority per fetch, the highest of those who asked (a fetch
    // joined by a more urgent request moves up in the extractor's queue).
    auto& shared = fetchPriorities_[key];
    if (shared && fetches_.peek(key)) {
      if (actors::raisePriority(*shared, priority)) extractor_->reconsider();
    } else {
      shared = std::make_shared<std::atomic<int>>(priority);
    }
    auto own = shared;
    Future<Fetched> fetched = fetches_.join(key, [&] { return download(query, own); });
    auto forget = actors::defer(self(), [this, key, own] {
      auto it = fetchPriorities_.find(key);
      if (it != fetchPriorities_.end() && it->second == own) fetchPriorities_.erase(it);
    });
    if (auto running = fetches_.peek(key)) {
      running->onAny(forget);
    } else {
      forget();
    }
    return fetched.then(actors::defer(self(), [this, key, hold](const Fetched& fetched) {
      aliases_[key] = fetched.id;
      return hold(fetched.id);
    }));
  }

  // The ACI fetched and extracted through the extractor, then checked and
  // committed; the staging directory is gone (committed or removed) before
  // the caller hears.
  Future<Fetched> download(const AppcImage& query, const std::shared_ptr<std::atomic<int>>& priority) {
    messages::ExtractRequest request;
    request.set_format(messages::ExtractRequest::ACI);
    request.set_what("the ACI of AppC image '" + query.name() + "'");
    request.set_staging_parent(paths::staging(options_.storeDir));
    *request.mutable_limits() = toMessage(options_.limits);
    request.set_bottom_layer(true);
    Feed feed = [fetcher = fetcher_, query](const std::string& staging, const std::shared_ptr<fetcher::ByteSink>&) {
      return fetcher->fetch(query, staging).then([name = query.name()](const fetcher::AciFile& aci) {
        return Fed{aci.path, aci.downloaded, "the ACI of AppC image '" + name + "' ('" + aci.source + "')"};
      });
    };
    request.set_priority(priority->load());
    return afterExtraction(runtime_, extractor_->extract(request, std::move(feed), {}, nullptr, priority),
                           actors::defer(self(), &Self::storeAci, query))
        .onReady(actors::defer(self(), &Self::stored));
  }

  // On the blocking pool: the extracted ACI checked against `query` and
  // committed as images/<id>; removed when it is not. Undiscardable: once
  // extracted, it is committed or removed.
  Future<Fetched> storeAci(const AppcImage& query, const messages::ExtractResult& extracted) {
    return actors::undiscardable(actors::async(
        runtime_, [query, extracted, store = options_.storeDir, sync = options_.syncImages]() -> Try<Fetched> {
          auto committed = commitAci(query, extracted, store, sync);
          if (committed.isError()) (void)actors::fs::removeTree(extracted.staging_dir());
          return committed;
        }));
  }

  void stored(const Fetched& fetched) {
    manifests_[fetched.id] = fetched.manifest;
    if (fetched.unsettled) unsettled_.insert(fetched.id);
    storedAt_[fetched.id] = ++stores_;
  }

  actors::Runtime& runtime_;
  const AppcStoreOptions options_;
  const std::shared_ptr<fetcher::AppcFetcher> fetcher_;
  MetadataManager metadata_;
  std::map<std::string, AppcManifest> manifests_;        // id -> manifest, every image in images/
  std::map<std::string, StoredImage> index_;             // key -> what it resolved to
  ContentSizes sizes_;                                   // of the images, once read
  std::map<std::uint64_t, std::set<std::string>> busy_;  // ids a running get holds
  std::set<std::string> unsettled_;                      // ids whose implied dirs wait for settle()
  std::map<std::string, std::string> aliases_;           // full key -> id fetched for it (this process)
  std::map<std::string, std::uint64_t> storedAt_;        // id -> order stored in (this process)
  std::uint64_t stores_ = 0;
  std::uint64_t gets_ = 0;
  actors::SharedWork<Fetched> fetches_;
  std::map<std::string, std::shared_ptr<std::atomic<int>>> fetchPriorities_;  // by full key, while fetched
  GarbageCollector gc_;
  const std::shared_ptr<Extractor> extractor_;  // shared with the other stores when the options give one
};

template class ProcessStore<AppcStoreProcess>;

Try<std::unique_ptr<AppcStore>> AppcStore::create(actors::Runtime& runtime, AppcStoreOptions options,
                                                  std::shared_ptr<fetcher::AppcFetcher> fetcher) {
  if (options.storeDir.empty()) return Error(ErrorKind::InvalidArgument, "The AppC store needs a directory");
  if (!fetcher) return Error(ErrorKind::InvalidArgument, "The AppC store needs a fetcher");
  auto made = makeStoreDirectories(options.storeDir, paths::appc::directories(options.storeDir));
  if (made.isError()) return made.error();
  auto process = std::make_unique<AppcStoreProcess>(runtime, std::move(options), std::move(fetcher));
  return std::unique_ptr<AppcStore>(new AppcStore(std::move(process), runtime));
}

AppcStore::AppcStore(std::unique_ptr<AppcStoreProcess> process, actors::Runtime& runtime)
    : ProcessStore(runtime, std::move(process)) {}

Try<std::string> AppcStore::keyOf(const messages::Image& image) const { return AppcStoreProcess::keyOf(image); }

// ProcessOwner waits for a gc/ sweep in the background first (quiesce()).
AppcStore::~AppcStore() = default;

}  // namespace prov::store
