#include "store/appc_store.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>

#include "actors/async.hpp"
#include "actors/collect.hpp"
#include "actors/defer.hpp"
#include "actors/dispatch.hpp"
#include "actors/fs.hpp"
#include "actors/process.hpp"
#include "actors/runtime.hpp"
#include "store/aci.hpp"
#include "store/atomic_file.hpp"
#include "store/layer_disk.hpp"
#include "store/metadata_manager.hpp"
#include "store/paths.hpp"
#include "store/shared_work.hpp"

namespace prov::store {

using actors::Future;
using actors::Promise;
using messages::AppcImage;
using messages::AppcManifest;
using messages::Image;
using messages::StoredImage;

namespace {

std::string imagesDir(const std::string& store) { return store + "/images"; }
std::string imageDir(const std::string& store, const std::string& id) { return imagesDir(store) + "/" + id; }
std::string imageRootfs(const std::string& store, const std::string& id) { return imageDir(store, id) + "/rootfs"; }
std::string imageManifest(const std::string& store, const std::string& id) { return imageDir(store, id) + "/manifest"; }
std::string indexDir(const std::string& store) { return store + "/index"; }
// The directories an image's rootfs/ only implies, one per line, until they
// are settled against its dependencies (whose stack is known only then).
std::string impliedFile(const std::string& store, const std::string& id) { return imageDir(store, id) + "/implied"; }

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
  for (const auto& dir : {imagesDir(store), paths::staging(store), paths::gc(store), indexDir(store)}) {
    auto made = actors::fs::makeDirectories(dir);
    if (made.isError()) return made.error();
  }
  auto staged = emptyDirectory(paths::staging(store));
  if (staged.isError()) return staged.error();
  Found found;
  std::vector<std::string> broken;
  for (const auto& id : actors::fs::listDirectory(imagesDir(store))) {
    std::ifstream in(imageManifest(store, id), std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    auto manifest = fetcher::parseAppcManifest(bytes.str(), "image '" + id + "'");
    struct stat st {};
    const bool hasRootfs = ::stat(imageRootfs(store, id).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    if (fetcher::validateAppcImageId(id, "").isError() || manifest.isError() || !hasRootfs) {
      broken.push_back(imageDir(store, id));
      found.dropped.push_back(id);
      continue;
    }
    if (::stat(impliedFile(store, id).c_str(), &st) == 0) found.unsettled.insert(id);
    found.images.emplace(id, std::move(*manifest));
  }
  auto marked = markForGc(store, broken);
  if (marked.isError()) return marked.error();
  auto swept = sweepGc(store);
  if (swept.isError()) return swept.error();
  return found;
}

}  // namespace

class AppcStoreProcess : public actors::Process<AppcStoreProcess> {
 public:
  AppcStoreProcess(actors::Runtime& runtime, AppcStoreOptions options, std::shared_ptr<fetcher::AppcFetcher> fetcher)
      : actors::Process<AppcStoreProcess>("appc-store"), runtime_(runtime), options_(std::move(options)),
        fetcher_(std::move(fetcher)), metadata_(runtime, indexDir(options_.storeDir)) {}

  void initialize() override {
    fetches_.setPost([pid = self()](std::function<void()> f) { actors::defer(pid, std::move(f))(); });
  }

  Future<Nothing> recover() {
    return actors::async(runtime_, [dir = options_.storeDir] { return scanStore(dir); })
        .then(actors::defer(self(), [this](const Found& found) {
          manifests_ = found.images;
          unsettled_ = found.unsettled;
          return metadata_.recover();
        }))
        .then(actors::defer(self(), [this](const std::vector<StoredImage>& entries) -> Future<Nothing> {
          index_.clear();
          std::vector<std::string> gone;
          for (const auto& entry : entries) {
            bool complete = entry.layer_ids_size() > 0;
            for (const auto& id : entry.layer_ids()) complete = complete && manifests_.count(id) > 0;
            if (complete) {
              index_[entry.key()] = entry;
            } else {
              gone.push_back(entry.key());
            }
          }
          if (gone.empty()) return Nothing{};
          return metadata_.remove(gone);
        }));
  }

  Future<ImageInfo> get(const Image& image) {
    if (image.type() != Image::APPC) {
      return Error(ErrorKind::InvalidArgument, "The AppC store only serves AppC images");
    }
    auto query = fetcher::withDefaultLabels(image.appc());
    if (query.isError()) return query.error();
    const bool cached = !image.has_cached() || image.cached();
    const std::string key = fullKey(*query);
    // A cached image comes from the index whole, dependencies included.
    if (cached) {
      auto it = index_.find(key);
      if (it != index_.end() && complete(it->second)) return infoOf(it->second);
    }
    const std::uint64_t serial = ++gets_;
    busy_[serial];
    auto resolution = std::make_shared<Resolution>();
    return resolve(*query, cached, {}, serial, resolution)
        .then(actors::defer(self(), [this, key](const std::vector<std::string>& ids) -> Future<StoredImage> {
          auto top = manifests_.find(ids.back());
          if (top == manifests_.end()) {
            return Error(ErrorKind::Unavailable, "AppC image '" + ids.back() + "' was removed while in use");
          }
          StoredImage stored;
          stored.set_key(key);
          stored.set_manifest_digest(ids.back());
          for (const auto& id : ids) stored.add_layer_ids(id);
          *stored.mutable_config() = fetcher::appcRuntimeConfig(top->second);
          stored.set_pulled_at(static_cast<std::int64_t>(std::time(nullptr)));
          index_[key] = stored;
          return metadata_.put(stored);
        }))
        .then(actors::defer(self(), [this](const StoredImage& stored) { return infoOf(stored); }))
        .onAny(actors::defer(self(), [this, serial, resolution] {
          busy_.erase(serial);
          resolution->resolved.clear();  // its futures hold it: let go
        }));
  }

  Future<Nothing> prune(const std::vector<Image>& excluded, const std::set<std::string>& activePaths) {
    std::set<std::string> keep;
    for (const auto& image : excluded) {
      if (image.type() != Image::APPC) continue;
      auto query = fetcher::withDefaultLabels(image.appc());
      if (query.isSome()) keep.insert(fullKey(*query));
    }
    std::vector<std::string> forget;
    std::set<std::string> used;
    for (const auto& [key, entry] : index_) {
      bool inUse = entry.layer_ids_size() > 0;
      for (const auto& id : entry.layer_ids()) {
        inUse = inUse && activePaths.count(imageRootfs(options_.storeDir, id)) > 0;
      }
      if (keep.count(key) == 0 && !inUse) {
        forget.push_back(key);
        continue;
      }
      used.insert(entry.layer_ids().begin(), entry.layer_ids().end());
    }
    for (const auto& [serial, ids] : busy_) used.insert(ids.begin(), ids.end());
    std::vector<std::string> doomed;
    for (const auto& [id, manifest] : manifests_) {
      if (used.count(id) == 0 && activePaths.count(imageRootfs(options_.storeDir, id)) == 0 &&
          activePaths.count(imageManifest(options_.storeDir, id)) == 0) {
        doomed.push_back(id);
      }
    }
    for (const auto& key : forget) index_.erase(key);
    std::vector<std::string> paths;
    for (const auto& id : doomed) {
      manifests_.erase(id);
      paths.push_back(imageDir(options_.storeDir, id));
    }
    const std::string dir = options_.storeDir;
    Future<Nothing> pruned = metadata_.remove(forget)
        .then(actors::defer(self(), [this, dir, paths] {
          return actors::async(runtime_, [dir, paths] { return markForGc(dir, paths); });
        }))
        .then(actors::defer(self(), [this, dir](const std::vector<std::string>&) {
          sweeping_ = actors::async(runtime_, [dir] { return sweepGc(dir); })
                          .recover([](const Future<Nothing>&) { return Nothing{}; });
          return Nothing{};
        }));
    pruning_ = pruned.recover([](const Future<Nothing>&) { return Nothing{}; });
    return pruned;
  }

  Future<Nothing> quiesce() {
    return pruning_.then(actors::defer(self(), [this] { return sweeping_; }));
  }

  std::vector<StoredImage> images() {
    std::vector<StoredImage> all;
    for (const auto& [key, entry] : index_) all.push_back(entry);
    return all;
  }

 private:
  ImageInfo infoOf(const StoredImage& stored) const {
    ImageInfo info;
    info.image = stored;
    for (const auto& id : stored.layer_ids()) info.layers.push_back(imageRootfs(options_.storeDir, id));
    info.configPath = imageManifest(options_.storeDir, stored.manifest_digest());
    return info;
  }

  // One get's walk over the dependency tree: each image resolved once
  // however many paths lead to it, and a bound on how many there are.
  struct Resolution {
    std::map<std::string, Future<std::vector<std::string>>> resolved;  // full key -> ids
    std::size_t images = 0;
  };
  static constexpr std::size_t kMaxImages = 256;

  // The ids making `query`'s image: its dependencies' (recursively, each
  // once) and then its own. `chain` holds the full keys and ids above it.
  Future<std::vector<std::string>> resolve(const AppcImage& query, bool cached, std::vector<std::string> chain,
                                           std::uint64_t serial, const std::shared_ptr<Resolution>& resolution) {
    const std::string key = fullKey(query);
    if (std::find(chain.begin(), chain.end(), key) != chain.end()) return cycleError(chain, key);
    if (auto done = resolution->resolved.find(key); done != resolution->resolved.end()) return done->second;
    if (++resolution->images > kMaxImages) {
      return Error(ErrorKind::ResourceExhausted, "AppC image '" + chain.front().substr(5) + "' has more than " +
                                                     std::to_string(kMaxImages) + " images in its dependency tree");
    }
    chain.push_back(key);
    Future<std::vector<std::string>> ids =
        fetchImage(query, cached, serial)
            .then(actors::defer(self(), [this, query, cached, chain, serial, resolution](const std::string& id) mutable
                                    -> Future<std::vector<std::string>> {
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
                auto dq = fetcher::withDefaultLabels(fetcher::dependencyImage(dependency));
                if (dq.isError()) return dq.error().withContext(what);
                if (!listed.insert(fullKey(*dq)).second) continue;  // listed twice
                dependencies.push_back(resolve(*dq, cached, chain, serial, resolution));
              }
              return actors::collect(dependencies)
                  .then([id](const std::vector<std::vector<std::string>>& lists) {
                    std::vector<std::string> ids;
                    std::set<std::string> seen;
                    for (const auto& list : lists) {
                      for (const auto& each : list) {
                        if (seen.insert(each).second) ids.push_back(each);
                      }
                    }
                    if (seen.insert(id).second) ids.push_back(id);
                    return ids;
                  })
                  .then(actors::defer(self(), [this](const std::vector<std::string>& ids) { return settle(ids); }))
                  .repair([what](const Future<std::vector<std::string>>& failed) -> Future<std::vector<std::string>> {
                    const Error& error = failed.failure();
                    if (error.message.starts_with("Failed to resolve the dependencies of")) return error;
                    return error.withContext(what);
                  });
            }));
    resolution->resolved.emplace(key, ids);
    return ids;
  }

  // The directories the top of `ids` only implies take their owner, mode
  // and times from its dependencies (the rest of `ids`, nearest last), once.
  Future<std::vector<std::string>> settle(const std::vector<std::string>& ids) {
    const std::string id = ids.back();
    if (unsettled_.count(id) == 0) return ids;
    std::vector<std::string> below;
    for (auto it = ids.rbegin() + 1; it != ids.rend(); ++it) below.push_back(imageRootfs(options_.storeDir, *it));
    const std::string store = options_.storeDir;
    const bool sync = options_.syncImages;
    return actors::async(runtime_,
                         [store, id, below, sync]() -> Try<Nothing> {
                           std::ifstream in(impliedFile(store, id));
                           std::vector<std::string> implied;
                           for (std::string line; std::getline(in, line);) {
                             if (!line.empty()) implied.push_back(line);
                           }
                           auto settled = settleImpliedDirs(imageRootfs(store, id), implied, below, sync);
                           if (settled.isError()) return settled.error();
                           if (::unlink(impliedFile(store, id).c_str()) != 0 && errno != ENOENT) {
                             return Error(ErrorKind::IO, "Failed to remove '" + impliedFile(store, id) +
                                                             "': " + std::strerror(errno));
                           }
                           return Nothing{};
                         })
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
    if (entry.layer_ids_size() == 0) return false;
    for (const auto& id : entry.layer_ids()) {
      if (manifests_.count(id) == 0) return false;
    }
    return true;
  }

  // One image (without its dependencies): from the store when it is there,
  // else fetched once for everyone asking. Its id is held for `serial`
  // (against prune) in the same turn it becomes known.
  Future<std::string> fetchImage(const AppcImage& query, bool cached, std::uint64_t serial) {
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
        return hold(it->second.manifest_digest());
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
    return fetches_.join(key, [&] { return download(query); })
        .then(actors::defer(self(), [this, key, hold](const Fetched& fetched) {
          aliases_[key] = fetched.id;
          return hold(fetched.id);
        }));
  }

  Future<Fetched> download(const AppcImage& query) {
    const std::string store = options_.storeDir;
    const std::string staging = paths::staging(store) + "/" + randomName();
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    auto made = actors::async(runtime_, [staging] { return actors::fs::makeDirectories(staging + "/rootfs"); });
    auto fetched = made.then([fetcher = fetcher_, query, staging](const Nothing&) {
      return fetcher->fetch(query, staging);
    });
    const ExtractLimits limits = options_.limits;
    const bool sync = options_.syncImages;
    Future<Fetched> result =
        fetched.then(actors::defer(self(), [this, query, staging, store, limits, sync, cancel](const fetcher::AciFile& aci) {
          return actors::async(runtime_, [query, staging, store, limits, sync, cancel, aci]() -> Try<Fetched> {
            const std::string what = "the ACI of AppC image '" + query.name() + "' ('" + aci.source + "')";
            auto contents = extractAci(aci.path, staging + "/rootfs", what, limits, cancel.get());
            if (aci.downloaded) ::unlink(aci.path.c_str());
            if (contents.isError()) return contents.error();
            if (contents->manifest.name() != query.name()) {
              return Error(ErrorKind::InvalidArgument, "Invalid " + what + ": its manifest names '" +
                                                           contents->manifest.name() + "', not '" + query.name() + "'");
            }
            for (const char* label : {"os", "arch"}) {
              auto own = contents->manifest.labels().find(label);
              const std::string& asked = query.labels().at(label);
              if (own != contents->manifest.labels().end() && own->second != asked) {
                return Error(ErrorKind::InvalidArgument, "Invalid " + what + ": its manifest says " + label + " '" +
                                                             own->second + "', not '" + asked + "' as asked for");
              }
            }
            if (!query.id().empty() && contents->id != query.id()) {
              return Error(ErrorKind::DigestMismatch, "Invalid " + what + ": its id is '" + contents->id +
                                                          "', not '" + query.id() + "' as asked for");
            }
            auto written = writeFileAtomically(staging + "/manifest", contents->manifestJson);
            if (written.isError()) return written.error();
            std::string implied;
            for (const auto& dir : contents->impliedDirs) implied += dir + "\n";
            if (!implied.empty()) {
              written = writeFileAtomically(staging + "/implied", implied, sync);
              if (written.isError()) return written.error();
            }
            auto committed = commitLayer(staging, staging + "/rootfs", {}, {}, imageDir(store, contents->id), sync);
            if (committed.isError()) return committed.error();
            return Fetched{contents->id, contents->manifest, !implied.empty()};
          });
        }));
    // Whatever happened, staging/<random> goes (a commit renamed it away)
    // before the caller hears of it.
    auto promise = std::make_shared<Promise<Fetched>>();
    promise->future().onDiscard([cancel, fetched, result] {
      cancel->store(true);
      fetched.discard();
      result.discard();
    });
    result.onAny(actors::defer(self(), [this, staging, promise](const Future<Fetched>& done) {
      if (done.isReady()) {
        manifests_[done->id] = done->manifest;
        if (done->unsettled) unsettled_.insert(done->id);
        storedAt_[done->id] = ++stores_;
      }
      actors::async(runtime_, [staging] { return actors::fs::removeTree(staging); })
          .onAny([promise, done](const Future<bool>&) { promise->associate(done); });
    }));
    return promise->future();
  }

  actors::Runtime& runtime_;
  const AppcStoreOptions options_;
  const std::shared_ptr<fetcher::AppcFetcher> fetcher_;
  MetadataManager metadata_;
  std::map<std::string, AppcManifest> manifests_;  // id -> manifest, every image in images/
  std::map<std::string, StoredImage> index_;       // key -> what it resolved to
  std::map<std::uint64_t, std::set<std::string>> busy_;  // ids a running get holds
  std::set<std::string> unsettled_;                // ids whose implied dirs wait for settle()
  std::map<std::string, std::string> aliases_;     // full key -> id fetched for it (this process)
  std::map<std::string, std::uint64_t> storedAt_;  // id -> order stored in (this process)
  std::uint64_t stores_ = 0;
  std::uint64_t gets_ = 0;
  SharedWork<Fetched> fetches_;
  Future<Nothing> sweeping_ = Nothing{};
  Future<Nothing> pruning_ = Nothing{};
};

struct AppcStore::Pid {
  actors::PID<AppcStoreProcess> pid;
};

Try<std::unique_ptr<AppcStore>> AppcStore::create(actors::Runtime& runtime, AppcStoreOptions options,
                                                  std::shared_ptr<fetcher::AppcFetcher> fetcher) {
  if (options.storeDir.empty()) return Error(ErrorKind::InvalidArgument, "The AppC store needs a directory");
  if (!fetcher) return Error(ErrorKind::InvalidArgument, "The AppC store needs a fetcher");
  for (const auto& dir : {imagesDir(options.storeDir), paths::staging(options.storeDir), paths::gc(options.storeDir),
                          indexDir(options.storeDir)}) {
    auto made = actors::fs::makeDirectories(dir);
    if (made.isError()) return made.error();
  }
  auto process = std::make_unique<AppcStoreProcess>(runtime, std::move(options), std::move(fetcher));
  return std::unique_ptr<AppcStore>(new AppcStore(std::move(process), runtime));
}

AppcStore::AppcStore(std::unique_ptr<AppcStoreProcess> process, actors::Runtime& runtime)
    : process_(std::move(process)), pid_(std::make_unique<Pid>()) {
  pid_->pid = actors::spawn(runtime, *process_);
}

AppcStore::~AppcStore() {
  auto quiet = actors::dispatch(pid_->pid, &AppcStoreProcess::quiesce);
  quiet.waitFor(std::chrono::minutes(5));
  actors::terminate(pid_->pid);
  actors::wait(pid_->pid);
}

Future<Nothing> AppcStore::recover() { return actors::dispatch(pid_->pid, &AppcStoreProcess::recover); }

Future<ImageInfo> AppcStore::get(const Image& image) {
  return actors::dispatch(pid_->pid, &AppcStoreProcess::get, image);
}

Future<Nothing> AppcStore::prune(const std::vector<Image>& excluded, const std::set<std::string>& activePaths) {
  return actors::dispatch(pid_->pid, &AppcStoreProcess::prune, excluded, activePaths);
}

Future<std::vector<StoredImage>> AppcStore::images() {
  return actors::dispatch(pid_->pid, &AppcStoreProcess::images);
}

}  // namespace prov::store
