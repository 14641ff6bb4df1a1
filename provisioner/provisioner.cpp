#include "provisioner/provisioner.hpp"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include "actors/async.hpp"
#include "actors/clock.hpp"
#include "actors/collect.hpp"
#include "actors/defer.hpp"
#include "actors/dispatch.hpp"
#include "actors/fs.hpp"
#include "actors/log.hpp"
#include "actors/process.hpp"
#include "actors/random.hpp"
#include "actors/runtime.hpp"
#include "actors/rwlock.hpp"
#include "actors/slots.hpp"
#include "provisioner/bundle.hpp"
#include "provisioner/container_disk.hpp"
#include "provisioner/metrics.hpp"
#include "provisioner/paths.hpp"
#include "store/atomic_file.hpp"

namespace prov::provisioner {

using messages::ContainerRecord;
using messages::ContainerRootfs;

namespace {

std::string parentOf(const std::string& id) {
  const auto slash = id.rfind('/');
  return slash == std::string::npos ? "" : id.substr(0, slash);
}

Try<DiskSpace> statvfsSpace(const std::string& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0 || st.f_blocks == 0) {
    return Error(ErrorKind::IO, "Failed to statvfs '" + path + "': " + std::strerror(errno));
  }
  struct stat at {};
  if (::stat(path.c_str(), &at) != 0) {
    return Error(ErrorKind::IO, "Failed to stat '" + path + "': " + std::strerror(errno));
  }
  const auto device = static_cast<std::uint64_t>(at.st_dev);
  return DiskSpace{static_cast<std::uint64_t>(st.f_blocks) * st.f_frsize,
                   static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize, device};
}

// What a store's usage says, with the provider it came from.
using ProviderUsage = std::vector<std::pair<std::string, store::StoreUsage>>;

// Each content path: how many images are made of it.
std::map<std::string, int> imagesUsing(const ProviderUsage& stores) {
  std::map<std::string, int> refs;
  for (const auto& [provider, usage] : stores) {
    for (const auto& [key, content] : usage.contentOf) {
      for (const auto& path : std::set<std::string>(content.begin(), content.end())) ++refs[path];
    }
  }
  return refs;
}

// Which images the kubelet's policy removes (ImageGcConfig), by provider,
// and the bytes that frees. Each store's file system (`spaces`, by
// provider; stores on one file system share its figure) past the high
// threshold must come down to the low one, and the stores' content under
// the cap. Nothing goes while neither is the case; else the least recently
// used of the images it may remove go, until what goes (with content no
// image is made of) covers each shortfall, or none is left. An image goes
// only for a shortfall it helps: its own file system's, or the cap's.
struct CollectionPlan {
  std::int64_t need = 0;                                 // the largest shortfall, in bytes
  std::int64_t freed = 0;                                // what the removals free
  bool enough = true;                                    // every shortfall covered
  std::map<std::string, std::vector<std::string>> keys;  // by provider
  std::set<std::string> orphans;                         // providers with content no image is made of
  std::size_t count() const {
    std::size_t n = 0;
    for (const auto& [provider, list] : keys) n += list.size();
    return n;
  }
  // Whether carrying it out removes anything.
  bool removes() const { return count() > 0 || !orphans.empty(); }
};

CollectionPlan planCollection(const ProviderUsage& stores, const std::map<std::string, DiskSpace>& spaces,
                              const ImageGcConfig& gc, const std::set<std::string>& kept,
                              const std::set<std::string>& active, std::int64_t now) {
  CollectionPlan plan;
  std::map<std::string, std::int64_t> fsNeed;  // by file system
  std::map<std::string, std::string> fsOf;     // provider -> its store's file system
  std::int64_t storeBytes = 0;
  for (const auto& [provider, usage] : stores) {
    for (const auto& [path, bytes] : usage.bytes) storeBytes += bytes;
    const DiskSpace& space = spaces.at(provider);
    // Device 0 (a DiskSpaceOf that does not say): a file system per store.
    const std::string fs = space.device != 0 ? "dev " + std::to_string(space.device) : "store " + provider;
    fsOf[provider] = fs;
    const double total = static_cast<double>(space.total);
    const double used = static_cast<double>(space.total - std::min(space.available, space.total));
    if (gc.highThresholdPercent > 0 && used * 100 > gc.highThresholdPercent * total) {
      fsNeed[fs] = std::max(fsNeed[fs], static_cast<std::int64_t>(used - gc.lowThresholdPercent / 100 * total));
    }
  }
  std::int64_t capNeed = 0;
  const auto cap = static_cast<std::int64_t>(
      std::min<std::uint64_t>(gc.maxStoreBytes, static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())));
  if (cap > 0 && storeBytes > cap) capNeed = storeBytes - cap;
  plan.need = capNeed;
  for (const auto& [device, need] : fsNeed) plan.need = std::max(plan.need, need);
  if (plan.need <= 0) return plan;
  auto covered = [&] {
    if (capNeed > 0) return false;
    for (const auto& [device, need] : fsNeed) {
      if (need > 0) return false;
    }
    return true;
  };
  auto free = [&](const std::string& provider, std::int64_t bytes) {
    plan.freed += bytes;
    capNeed -= bytes;
    fsNeed[fsOf.at(provider)] -= bytes;
  };
  std::map<std::string, int> refs = imagesUsing(stores);
  for (const auto& [provider, usage] : stores) {  // content no image is made of goes with any removal
    for (const auto& [path, size] : usage.bytes) {
      if (refs.count(path) > 0 || active.count(path) > 0) continue;
      free(provider, size);
      plan.orphans.insert(provider);
    }
  }
  struct Candidate {
    std::int64_t lastUse, pulledAt;
    std::string key, provider;
    const store::StoreUsage* usage;
  };
  std::vector<Candidate> candidates;
  const auto minimumAge = std::chrono::duration_cast<std::chrono::seconds>(gc.minimumAge).count();
  for (const auto& [provider, usage] : stores) {
    for (const auto& image : usage.images) {
      if (kept.count(image.key()) > 0 || now - image.pulled_at() < minimumAge) continue;
      const std::int64_t lastUse = image.last_used_at() > 0 ? image.last_used_at() : image.pulled_at();
      candidates.push_back({lastUse, image.pulled_at(), image.key(), provider, &usage});
    }
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return std::tie(a.lastUse, a.pulledAt, a.key) < std::tie(b.lastUse, b.pulledAt, b.key);
  });
  for (const auto& candidate : candidates) {
    if (covered()) break;
    if (capNeed <= 0 && fsNeed[fsOf.at(candidate.provider)] <= 0) continue;  // would help no shortfall
    const auto& content = candidate.usage->contentOf.at(candidate.key);
    for (const auto& path : std::set<std::string>(content.begin(), content.end())) {
      if (--refs[path] > 0 || active.count(path) > 0) continue;
      auto size = candidate.usage->bytes.find(path);
      if (size != candidate.usage->bytes.end()) free(candidate.provider, size->second);
    }
    plan.keys[candidate.provider].push_back(candidate.key);
  }
  plan.enough = covered();
  return plan;
}

}  // namespace

class ProvisionerProcess : public actors::Process<ProvisionerProcess> {
 public:
  struct Info {
    std::vector<ContainerRootfs> rootfses;
    Future<Nothing> provisioning = Nothing{};
    actors::Promise<bool> termination;
    bool destroying = false;
  };

  ProvisionerProcess(actors::Runtime& runtime, Provisioner::Parts parts)
      : actors::Process<ProvisionerProcess>("provisioner"), runtime_(runtime), parts_(std::move(parts)),
        root_(paths::root(parts_.workDir)) {
    if (!parts_.diskSpace) parts_.diskSpace = statvfsSpace;
  }

  void initialize() override {
    assembling_.setPost([pid = self()](std::function<void()> f) { actors::defer(pid, std::move(f))(); });
    assembling_.setCount(kAssemblingPerBlockingThread * runtime_.blockingThreads());
    if (parts_.imageGc) scheduleGcCheck();
  }

  // ---- recover --------------------------------------------------------------

  Future<Nothing> recover(const std::set<std::string>& known) {
    return actors::async(runtime_, [root = root_] { return scanContainers(root); })
        .then(actors::defer(self(), &Self::adoptContainers, known));
  }

  // The containers found on disk taken in; the unknown ones destroyed; then
  // the stores recovered.
  Future<Nothing> adoptContainers(const std::set<std::string>& known, const std::vector<ContainerInfo>& found) {
    std::vector<Future<Nothing>> unfinished;
    for (const auto& container : found) {
      auto& info = infos_[container.id];
      if (!info) info = std::make_shared<Info>();
      info->rootfses = container.rootfses;
      for (const auto& rootfs : container.rootfses) {
        if (!rootfs.unfinished()) continue;
        actors::log(actors::LogLevel::Info, "recover.unfinished",
                    {{"container", container.id}, {"rootfs", rootfs.id()}, {"backend", rootfs.backend()}});
        unfinished.push_back(takeDownUnfinished(container.id, rootfs));
      }
    }
    return actors::collect(unfinished).then(actors::defer(self(), &Self::destroyOrphans, known, found));
  }

  // A rootfs the process died making or taking down (the record still says
  // unfinished):
  // whatever the backend made of it taken down, then out of the record.
  Future<Nothing> takeDownUnfinished(const std::string& id, const ContainerRootfs& rootfs) {
    const std::string dir = paths::container(root_, id);
    auto* b = backend(rootfs.backend());
    if (!b) return Nothing{};  // a backend not enabled now: destroy() says so
    // When it cannot be taken down, the record keeps it (still marked), and
    // destroying the container tries again; recover goes on.
    return takeDown(dir, rootfs)
        .then(actors::defer(self(), [this, id, rootfsId = rootfs.id()] { return forgetRootfs(id, rootfsId); }))
        .recover([](const Future<Nothing>&) { return Nothing{}; });
  }

  Future<Nothing> destroyOrphans(const std::set<std::string>& known, const std::vector<ContainerInfo>& found) {
    std::vector<Future<bool>> orphans;
    for (const auto& container : found) {
      // Unknown, and not inside another unknown one (that destroys it).
      if (known.count(container.id) > 0) continue;
      const std::string parent = parentOf(container.id);
      if (!parent.empty() && infos_.count(parent) > 0 && known.count(parent) == 0) continue;
      actors::log(actors::LogLevel::Info, "recover.destroy", {{"container", container.id}, {"reason", "unknown"}});
      orphans.push_back(destroyTree(container.id));
    }
    return actors::collect(orphans).then(actors::defer(self(), &Self::recoverStores));
  }

  // Provisioner::quiesce. An image GC check in flight first: it may remove
  // (and so sweep). Not named quiesce(): ProcessOwner would wait for it
  // before stopping the actor, where the actor is to stop at once (calls
  // queued fail with Unavailable).
  Future<Nothing> idle() {
    return checking_.then(
        actors::defer(self(), [this] { return forEachStore([](store::Store& store) { return store.quiesce(); }); }));
  }

  Future<Nothing> recoverStores() {
    actors::log(actors::LogLevel::Info, "recover.containers", {{"kept", std::to_string(infos_.size())}});
    return forEachStore([](store::Store& store) { return store.recover(); }).onAny(actors::defer(self(), [this] {
      // The images of the containers recover destroyed, now that the
      // stores know them.
      storesRecovered_ = true;
      touchImages(std::exchange(untouched_, {}));
    }));
  }

  // The images with these keys were in use until now: their last use moves
  // (once the stores are recovered; before, they know no image).
  void touchImages(const std::vector<std::string>& keys) {
    if (!storesRecovered_) {
      untouched_.insert(untouched_.end(), keys.begin(), keys.end());
      return;
    }
    if (keys.empty()) return;
    for (const auto& [provider, store] : parts_.stores) store->touch(keys);
  }

  // ---- provision ------------------------------------------------------------

  Future<ProvisionInfo> provision(const std::string& id, const messages::Image& image) {
    auto valid = validateContainerId(id);
    if (valid.isError()) return valid.error();
    auto promise = std::make_shared<actors::Promise<ProvisionInfo>>();
    // Init-captures: a copy of a const& parameter is a const member, which a
    // move of the lambda (into the std::function) would copy again.
    Future<ProvisionInfo> work = underLock<ProvisionInfo>(
        Lock::Read, [this, id = id, image = image] { return startProvision(id, image); });
    promise->future().onDiscard([work] { work.discard(); });
    work.onAny(actors::defer(self(), &Self::handOver, id, promise));
    return promise->future();
  }

  // A caller who gave up sees DISCARDED, however far the provision got: a
  // rootfs finished after that is not handed out but taken down again.
  void handOver(const std::string& id, const std::shared_ptr<actors::Promise<ProvisionInfo>>& promise,
                const Future<ProvisionInfo>& done) {
    if (done.isReady()) ++provisions_;
    if (promise->future().hasDiscard()) {
      if (!done.isReady()) {
        promise->discard();
        return;
      }
      undoRootfs(id, done.get().rootfs).onAny([promise] { promise->discard(); });
      return;
    }
    done.isReady() ? promise->set(done.share()) : done.isFailed() ? promise->fail(done.failure()) : promise->discard();
  }

  Future<Nothing> undoRootfs(const std::string& id, const std::string& path) {
    auto it = infos_.find(id);
    if (it == infos_.end()) return Nothing{};
    const std::string rootfsId = paths::rootfsIdOf(path);
    for (const auto& rootfs : it->second->rootfses) {
      if (rootfs.id() != rootfsId) continue;
      const std::string dir = paths::container(root_, id);
      auto* b = backend(rootfs.backend());
      Future<bool> destroyed = b ? b->destroy(path, paths::backendDir(dir, rootfs.backend())) : Future<bool>(false);
      return destroyed.recover([](const Future<bool>&) { return false; })
          .then(actors::defer(self(), [this, id, rootfsId] { return forgetRootfs(id, rootfsId); }));
    }
    return Nothing{};
  }

  Future<ProvisionInfo> startProvision(const std::string& id, const messages::Image& image) {
    for (std::string at = id; !at.empty(); at = parentOf(at)) {
      if (auto it = infos_.find(at); it != infos_.end() && it->second->destroying) {
        return Error(ErrorKind::Unavailable,
                     "Failed to provision container '" + id + "': '" + at + "' is being destroyed");
      }
    }
    auto fetched = getImage(image);
    if (!fetched) {
      return Error(ErrorKind::Unsupported, "Failed to provision container '" + id + "': the " +
                                               store::providerOf(image) +
                                               " image provider is not enabled (--image_providers)");
    }
    auto& info = infos_[id];
    if (!info) info = std::make_shared<Info>();
    const auto started = std::chrono::steady_clock::now();
    // The image goes on shared, not copied (a burst of provisions of one
    // image hands the same one along).
    Future<ProvisionInfo> provisioning = fetched->then(actors::defer(
        self(), [this, id = id, started, provider = store::providerOf(image), priority = image.priority(),
                 pulled = *fetched] { return imagePulled(id, started, provider, priority, pulled.share()); }));
    chainInFlight(*info, provisioning);
    return provisioning;
  }

  // The rootfs is made a few at a time (assembling_): each of its steps is
  // a job on the blocking pool, which runs jobs in the order they come, so
  // a burst of N provisions made all at once would finish every one of them
  // together, at the end of the burst; a bounded number at a time, they
  // finish in turn (by priority, then in order of arrival) at the same
  // rate. Only this local part waits for a slot, never a pull.
  Future<ProvisionInfo> imagePulled(const std::string& id, std::chrono::steady_clock::time_point started,
                                    const std::string& provider, int priority,
                                    const std::shared_ptr<const store::ImageInfo>& pulled) {
    pullMs_[provider] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    if (pulled->fetched) pullDurations_.observe(pulled->imageBytes, pullMs_[provider] / 1000.0);
    return assembling_.run<ProvisionInfo>(
        [this, id, pulled]() -> Future<ProvisionInfo> {
          if (!parts_.defaultBackend.empty()) return makeRootfs(id, pulled, parts_.defaultBackend);
          return defaultBackend(id).then(actors::defer(
              self(), [this, id, pulled](const std::string& name) { return makeRootfs(id, pulled, name); }));
        },
        priority);
  }

  // The backend chosen for this host (Parts::defaultBackend left empty)
  // for provision `id`. The host is probed once, on the blocking pool, and
  // every provision that comes meanwhile waits for the one answer; a probe
  // that failed (the runtime stopping) is not kept. The answer not among
  // the provisioner's backends fails each provision that needs it.
  Future<std::string> defaultBackend(const std::string& id) {
    if (!suitedBackend_ || suitedBackend_->isFailed() || suitedBackend_->isDiscarded() ||
        suitedBackend_->isAbandoned()) {
      suitedBackend_ = actors::undiscardable(
          actors::async(runtime_, [dir = root_] { return backend::defaultBackend(dir); }));
    }
    return actors::undiscardable(*suitedBackend_)
        .then(actors::defer(self(), [this, id](const std::string& name) -> Future<std::string> {
          if (parts_.backends.count(name) == 0) {
            std::string available;
            for (const auto& [each, b] : parts_.backends) available += (available.empty() ? "" : ", ") + each;
            return Error(ErrorKind::Unsupported,
                         "Failed to provision container '" + id + "': the backend this machine suits, '" + name +
                             "', is not among the provisioner's (" + (available.empty() ? "none" : available) +
                             "); name one (--image_provisioner_backend, Parts::defaultBackend)");
          }
          parts_.defaultBackend = name;
          return name;
        }));
  }

  Future<ProvisionInfo> makeRootfs(const std::string& id, const std::shared_ptr<const store::ImageInfo>& pulled,
                                   const std::string& backendName) {
    auto info = infos_[id];
    if (!info) info = infos_[id] = std::make_shared<Info>();
    if (info->destroying) {
      return Error(ErrorKind::Unavailable, "Failed to provision container '" + id + "': it is being destroyed");
    }
    // Shared by the steps below, not copied into each.
    auto made = std::make_shared<ContainerRootfs>();
    ContainerRootfs& rootfs = *made;
    rootfs.set_id(actors::uuid());
    rootfs.set_backend(backendName);
    rootfs.set_image_key(pulled->image.key());
    for (const auto& layer : pulled->layers) rootfs.add_layers(layer);
    rootfs.set_config(pulled->configPath);
    rootfs.set_unfinished(true);
    info->rootfses.push_back(rootfs);
    const std::string dir = paths::container(root_, id);
    const std::string path = paths::rootfs(dir, backendName, rootfs.id());
    const std::string backendDir = paths::backendDir(dir, backendName);
    ContainerRecord record;
    for (const auto& r : info->rootfses) *record.add_rootfses() = r;
    // The record first: from now on GC keeps what this rootfs uses. The
    // backend's rootfses directory in the same job (one hop less).
    return createRecord(dir, record, paths::rootfses(dir, backendName))
        .then(actors::defer(self(), &Self::assemble, backendName, pulled, path, backendDir))
        .then(actors::defer(self(), &Self::assembled, id, rootfs.id(), backendName, path, pulled))
        .recover(actors::defer(self(), &Self::abandonRootfs, id, std::shared_ptr<const ContainerRootfs>(made), path,
                               backendDir));
  }

  Future<backend::RootfsInfo> assemble(const std::string& backendName,
                                       const std::shared_ptr<const store::ImageInfo>& pulled, const std::string& path,
                                       const std::string& backendDir) {
    return backend(backendName)->provision(pulled->layers, path, backendDir);
  }

  // The rootfs is whole: so says the record, before anyone gets it.
  Future<ProvisionInfo> assembled(const std::string& id, const std::string& rootfsId, const std::string& backendName,
                                  const std::string& path, const std::shared_ptr<const store::ImageInfo>& pulled,
                                  const backend::RootfsInfo& made) {
    auto it = infos_.find(id);
    if (it == infos_.end()) return Error(ErrorKind::Unavailable, "Container '" + id + "' was forgotten meanwhile");
    for (auto& r : it->second->rootfses) {
      if (r.id() == rootfsId) r.set_unfinished(false);
    }
    ContainerRecord record;
    for (const auto& r : it->second->rootfses) *record.add_rootfses() = r;
    auto info = std::make_shared<const ProvisionInfo>(
        ProvisionInfo{path, backendName, std::shared_ptr<const messages::StoredImage>(pulled, &pulled->image),
                      made.ephemeralVolumes});
    return writeRecord(paths::container(root_, id), record).then([info] { return actors::readyShared(info); });
  }

  // A rootfs that failed (or was discarded) on its way: whatever the backend
  // made of it taken down (a discard can land after the backend mounted it:
  // the step after is then skipped), then out of the record. Runs once the
  // backend step is over. When the backend cannot take it down, the record
  // keeps it, so that destroying the container tries again.
  Future<ProvisionInfo> abandonRootfs(const std::string& id, const std::shared_ptr<const ContainerRootfs>& rootfs,
                                      const std::string& path, const std::string& backendDir,
                                      const Future<ProvisionInfo>& failed) {
    Error error = failed.isFailed() ? failed.failure() : Error(ErrorKind::Cancelled, "The provision was discarded");
    auto* b = backend(rootfs->backend());
    Future<bool> destroyed = b ? b->destroy(path, backendDir) : Future<bool>(false);
    // The caller's discard must not reach the clean-up.
    Future<Nothing> cleaned =
        destroyed
            .then(actors::defer(self(), [this, id, rootfsId = rootfs->id()] { return forgetRootfs(id, rootfsId); }))
            .recover([](const Future<Nothing>&) { return Nothing{}; });
    return actors::undiscardable(cleaned).then([error]() -> Future<ProvisionInfo> { return error; });
  }

  Future<messages::StoredImage> pullImage(const messages::Image& image) {
    return underLock<messages::StoredImage>(Lock::Read, [this, image = image]() -> Future<messages::StoredImage> {
      auto fetched = getImage(image);
      if (!fetched) {
        return Error(ErrorKind::Unsupported, "Failed to pull: the " + store::providerOf(image) +
                                                 " image provider is not enabled (--image_providers)");
      }
      const auto started = std::chrono::steady_clock::now();
      return fetched->then(actors::defer(self(), [this, started](const store::ImageInfo& info) {
        if (info.fetched) {
          pullDurations_.observe(info.imageBytes,
                                 std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        }
        return info.image;
      }));
    });
  }

  // ---- bundles --------------------------------------------------------------

  Future<std::string> writeBundle(const std::string& id, const ProvisionInfo& provisioned, BundleOptions options) {
    return underLock<std::string>(Lock::Read, [this, id, provisioned, options]() mutable -> Future<std::string> {
      auto fail = [&](ErrorKind kind, const std::string& why) {
        return Error(kind, "Failed to write a bundle for container '" + id + "': " + why);
      };
      if (!provisioned.image) return fail(ErrorKind::InvalidArgument, "the ProvisionInfo given has no image");
      auto it = infos_.find(id);
      if (it == infos_.end() || it->second->destroying) return fail(ErrorKind::NotFound, "no such container");
      const std::string dir = paths::container(root_, id);
      ContainerRootfs* rootfs = nullptr;
      for (auto& r : it->second->rootfses) {
        if (paths::rootfs(dir, r.backend(), r.id()) == provisioned.rootfs) rootfs = &r;
      }
      if (rootfs == nullptr || rootfs->unfinished()) {
        return fail(ErrorKind::NotFound, "'" + provisioned.rootfs + "' is not one of its rootfses");
      }
      if (!rootfs->bundle().empty()) {
        return fail(ErrorKind::AlreadyExists, "its rootfs already has the bundle '" + rootfs->bundle() + "'");
      }
      if (options.hostname.empty()) options.hostname = id.substr(id.rfind('/') + 1);
      // Undiscardable: once the directory may be made, the record must end
      // up saying whether it was.
      Future<std::string> written = actors::undiscardable(
          actors::async(runtime_, [dir = options.dir] { return bundleDirectory(dir); })
              .then(actors::defer(self(), &Self::recordBundle, id, rootfs->id(), provisioned, options))
              .repair([id](const Future<std::string>& failed) -> Future<std::string> {
                return failed.failure().withContext("Failed to write a bundle for container '" + id + "'");
              }));
      // A destroy waits for it as for a provision in flight: it never
      // removes a bundle that is being made.
      chainInFlight(*it->second, written);
      return written;
    });
  }

  // The directory (canonical, new) recorded with its rootfs, then made; out
  // of the record again when it could not be made.
  Future<std::string> recordBundle(const std::string& id, const std::string& rootfsId, const ProvisionInfo& provisioned,
                                   BundleOptions options, const std::string& canonical) {
    auto it = infos_.find(id);
    if (it == infos_.end() || it->second->destroying) return Error(ErrorKind::NotFound, "no such container");
    ContainerRootfs* rootfs = nullptr;
    for (auto& r : it->second->rootfses) {
      if (r.id() == rootfsId) rootfs = &r;
    }
    if (rootfs == nullptr) return Error(ErrorKind::NotFound, "its rootfs is gone");
    if (!rootfs->bundle().empty()) {
      return Error(ErrorKind::AlreadyExists, "its rootfs already has the bundle '" + rootfs->bundle() + "'");
    }
    rootfs->set_bundle(canonical);
    options.dir = canonical;
    ContainerRecord record;
    for (const auto& r : it->second->rootfses) *record.add_rootfses() = r;
    return writeRecord(paths::container(root_, id), record)
        .then(actors::defer(self(),
                            [this, image = provisioned.image, path = provisioned.rootfs, options] {
                              return actors::async(runtime_, [image, path, options] {
                                return provisioner::writeBundle(image->config(), path, options);
                              });
                            }))
        .then([canonical] { return canonical; })
        .recover(actors::defer(self(), [this, id, rootfsId](const Future<std::string>& failed) {
          Error error = failed.isFailed() ? failed.failure() : Error(ErrorKind::Cancelled, "discarded");
          return unrecordBundle(id, rootfsId).then([error]() -> Future<std::string> { return error; });
        }));
  }

  // `work` joins what a destroy of the container waits for.
  template <typename T>
  static void chainInFlight(Info& info, const Future<T>& work) {
    auto settled = [](const auto& f) {
      return f.then([](const auto&) { return Nothing{}; }).recover([](const auto&) { return Nothing{}; });
    };
    std::vector<Future<Nothing>> inFlight = {settled(info.provisioning), settled(work)};
    info.provisioning = actors::collect(inFlight).then([](const std::vector<Nothing>&) { return Nothing{}; });
  }

  Future<Nothing> unrecordBundle(const std::string& id, const std::string& rootfsId) {
    auto it = infos_.find(id);
    if (it == infos_.end()) return Nothing{};
    for (auto& r : it->second->rootfses) {
      if (r.id() == rootfsId) r.clear_bundle();
    }
    ContainerRecord record;
    for (const auto& r : it->second->rootfses) *record.add_rootfses() = r;
    return writeRecord(paths::container(root_, id), record).recover([](const Future<Nothing>&) { return Nothing{}; });
  }

  // A rootfs taken down: its bundle first (nothing of the image stays
  // reachable through it), then what the backend made.
  Future<bool> takeDown(const std::string& dir, const ContainerRootfs& rootfs) {
    if (backend(rootfs.backend()) == nullptr) {
      return Error(ErrorKind::NotFound, "unknown backend '" + rootfs.backend() + "'");
    }
    const std::string path = paths::rootfs(dir, rootfs.backend(), rootfs.id());
    Future<bool> bundleGone = true;
    if (!rootfs.bundle().empty()) {
      // A bundle that cannot be removed (somebody replaced or locked its
      // directory) is theirs now: said, and the rootfs goes anyway.
      bundleGone = actors::async(runtime_, [bundle = rootfs.bundle(), path] {
                     return removeBundle(bundle, path);
                   }).repair([bundle = rootfs.bundle()](const Future<bool>& failed) {
        actors::log(actors::LogLevel::Warn, "bundle.left", {{"bundle", bundle}, {"error", failed.failure().message}});
        return false;
      });
    }
    return bundleGone.then(actors::defer(
        self(), [this, name = rootfs.backend(), path, backendDir = paths::backendDir(dir, rootfs.backend())](bool) {
          auto* b = backend(name);
          return b ? b->destroy(path, backendDir)
                   : Future<bool>(Error(ErrorKind::NotFound, "unknown backend '" + name + "'"));
        }));
  }

  // ---- destroy --------------------------------------------------------------

  Future<bool> destroy(const std::string& id) {
    auto valid = validateContainerId(id);
    if (valid.isError()) return valid.error();
    return underLock<bool>(Lock::Read, [this, id] { return destroyTree(id); });
  }

  // Children first; no lock taken here (the caller holds one).
  Future<bool> destroyTree(const std::string& id) {
    std::vector<Future<bool>> children;
    for (const auto& child : childrenOf(id)) children.push_back(destroyTree(child));
    auto it = infos_.find(id);
    if (it == infos_.end()) {
      if (children.empty()) return false;
      // A parent without a rootfs of its own: its directory goes after them.
      const std::string dir = paths::container(root_, id);
      return actors::await(children).then(actors::defer(self(), [this, dir](const std::vector<Future<bool>>&) {
        return actors::async(runtime_, [dir] { return actors::fs::removeTree(dir); }).then([](bool) { return true; });
      }));
    }
    std::shared_ptr<Info> info = it->second;
    if (info->destroying) return info->termination.future();
    info->destroying = true;
    info->termination = actors::Promise<bool>();  // a retry after a failure is a destroy of its own
    actors::await(children).then(actors::defer(self(), &Self::childrenDestroyed, id, info));
    return info->termination.future();
  }

  // The containers "id/name" there are: the keys that start "id/" are one
  // range of the map (and hold the deeper ones too), so a destroy does not
  // look at every container.
  std::vector<std::string> childrenOf(const std::string& id) const {
    const std::string prefix = id + "/";
    std::vector<std::string> children;
    for (auto it = infos_.lower_bound(prefix); it != infos_.end() && it->first.starts_with(prefix); ++it) {
      if (it->first.find('/', prefix.size()) == std::string::npos) children.push_back(it->first);
    }
    return children;
  }

  // Then, unless a child failed, the container itself, once a provision in
  // flight is over (never race it).
  Nothing childrenDestroyed(const std::string& id, const std::shared_ptr<Info>& info,
                            const std::vector<Future<bool>>& done) {
    for (const auto& child : done) {
      if (!child.isReady()) {
        destroyFailed(info, Error(ErrorKind::IO, "Failed to destroy the nested containers of '" + id + "': " +
                                                     (child.isFailed() ? child.failure().message : "discarded")));
        return Nothing{};
      }
    }
    info->provisioning.recover([](const Future<Nothing>&) { return Nothing{}; })
        .then(actors::defer(self(), &Self::destroyRootfses, id, info));
    return Nothing{};
  }

  // The record first: a kill from here on leaves rootfses that recover
  // takes down, not ones it would hand out half removed.
  Nothing destroyRootfses(const std::string& id, const std::shared_ptr<Info>& info) {
    ContainerRecord record;
    for (auto& rootfs : info->rootfses) {
      rootfs.set_unfinished(true);
      *record.add_rootfses() = rootfs;
    }
    if (info->rootfses.empty()) return takeDownRootfses(id, info);
    writeRecord(paths::container(root_, id), record)
        .onAny(actors::defer(self(), [this, id, info](const Future<Nothing>& written) {
          if (written.isReady()) {
            takeDownRootfses(id, info);
            return;
          }
          destroyFailed(info, Error(ErrorKind::IO, "Failed to destroy container '" + id + "': " +
                                                       (written.isFailed() ? written.failure().message : "discarded")));
        }));
    return Nothing{};
  }

  Nothing takeDownRootfses(const std::string& id, const std::shared_ptr<Info>& info) {
    const std::string dir = paths::container(root_, id);
    std::vector<Future<bool>> destroys;
    for (const auto& rootfs : info->rootfses) {
      auto* b = backend(rootfs.backend());
      if (b == nullptr) {
        destroys.push_back(Error(ErrorKind::NotFound, "unknown backend '" + rootfs.backend() + "'"));
        continue;
      }
      destroys.push_back(takeDown(dir, rootfs));
    }
    actors::await(destroys).then(actors::defer(self(), &Self::rootfsesDestroyed, id, info));
    return Nothing{};
  }

  // Unless a rootfs could not be taken down, the container's directory goes.
  Future<Nothing> rootfsesDestroyed(const std::string& id, const std::shared_ptr<Info>& info,
                                    const std::vector<Future<bool>>& done) {
    std::string errors;
    for (const auto& d : done) {
      if (!d.isReady()) errors += (errors.empty() ? "" : "; ") + (d.isFailed() ? d.failure().message : "discarded");
    }
    if (!errors.empty()) {
      destroyFailed(info, Error(ErrorKind::IO, "Failed to destroy container '" + id + "': " + errors));
      return Nothing{};
    }
    const std::string dir = paths::container(root_, id);
    actors::async(runtime_, [dir] {
      return actors::fs::removeTree(dir);
    }).onAny(actors::defer(self(), &Self::containerRemoved, id, info));
    return Nothing{};
  }

  void containerRemoved(const std::string& id, const std::shared_ptr<Info>& info, const Future<bool>& removed) {
    if (!removed.isReady()) {
      destroyFailed(info, removed.isFailed() ? removed.failure()
                                             : Error(ErrorKind::Cancelled, "Failed to remove container '" + id + "'"));
      return;
    }
    ++destroys_;
    std::vector<std::string> keys;
    for (const auto& rootfs : info->rootfses) keys.push_back(rootfs.image_key());
    touchImages(keys);
    info->termination.set(true);
    if (infos_.count(id) > 0 && infos_[id] == info) infos_.erase(id);
  }

  // The container stays known (and on disk): destroy() may be tried again.
  void destroyFailed(const std::shared_ptr<Info>& info, const Error& error) {
    ++removeContainerErrors_;
    info->destroying = false;
    info->termination.fail(error);
  }

  std::string metricsText() { return prometheusText(metrics(), pullDurations_); }

  // ---- images ---------------------------------------------------------------

  Future<Nothing> pruneImages(const std::vector<messages::Image>& excluded) {
    return underLock<Nothing>(Lock::Write, [this, excluded] {
      ++prunes_;
      actors::log(actors::LogLevel::Info, "gc.prune",
                  {{"excluded", std::to_string(excluded.size())}, {"containers", std::to_string(infos_.size())}});
      return activePaths().then(actors::defer(self(), [this, excluded](const std::set<std::string>& active) {
        return forEachStore([&](store::Store& store) { return store.prune(excluded, active); });
      }));
    });
  }

  // The layer directories and config files the containers' records name:
  // as recorded, and canonical (file system calls: on the blocking pool),
  // so that a record written when the store dir was spelled another way (a
  // symlink, a trailing slash) still names the layers a container mounts.
  Future<std::set<std::string>> activePaths() {
    std::vector<std::string> recorded;
    for (const auto& [id, info] : infos_) {
      for (const auto& rootfs : info->rootfses) {
        recorded.insert(recorded.end(), rootfs.layers().begin(), rootfs.layers().end());
        if (!rootfs.config().empty()) recorded.push_back(rootfs.config());
      }
    }
    return actors::async(runtime(), [recorded] {
      std::set<std::string> active(recorded.begin(), recorded.end());
      for (const auto& path : recorded) {
        std::error_code ec;
        const auto canonical = std::filesystem::canonical(path, ec);
        if (!ec) active.insert(canonical.string());
      }
      return active;
    });
  }

  // The keys of the images the containers' rootfses are made from.
  std::set<std::string> imagesInUse() const {
    std::set<std::string> keys;
    for (const auto& [id, info] : infos_) {
      for (const auto& rootfs : info->rootfses) keys.insert(rootfs.image_key());
    }
    return keys;
  }

  Future<ProviderUsage> storeUsage() {
    std::vector<std::string> providers;
    std::vector<Future<store::StoreUsage>> usages;
    for (const char* provider : store::kProviders) {
      if (auto it = parts_.stores.find(provider); it != parts_.stores.end()) {
        providers.push_back(provider);
        usages.push_back(it->second->usage());
      }
    }
    return actors::collect(usages).then([providers](const std::vector<store::StoreUsage>& all) {
      ProviderUsage zipped;
      for (std::size_t i = 0; i < all.size(); ++i) zipped.emplace_back(providers[i], all[i]);
      return zipped;
    });
  }

  Future<std::vector<ImageUsage>> imageUsage() {
    return storeUsage().then([inUse = imagesInUse()](const ProviderUsage& stores) {
      const std::map<std::string, int> refs = imagesUsing(stores);
      std::vector<ImageUsage> images;
      for (const auto& [provider, usage] : stores) {
        for (const auto& image : usage.images) {
          ImageUsage entry{image, 0, 0, inUse.count(image.key()) > 0, std::nullopt};
          if (auto verified = usage.verified.find(image.key()); verified != usage.verified.end()) {
            entry.verified = verified->second;
          }
          const auto& content = usage.contentOf.at(image.key());
          for (const auto& path : std::set<std::string>(content.begin(), content.end())) {
            auto size = usage.bytes.find(path);
            if (size == usage.bytes.end()) continue;
            entry.bytes += size->second;
            if (refs.at(path) == 1) entry.ownBytes += size->second;
          }
          images.push_back(std::move(entry));
        }
      }
      return images;
    });
  }

  // ---- checking the store ---------------------------------------------------

  Future<std::vector<ImageCheck>> verifyImages(const std::vector<messages::Image>& images) {
    // By provider, the keys asked for; every provider's images when none is.
    std::map<std::string, std::vector<std::string>> keys;
    for (const auto& image : images) {
      auto store = parts_.stores.find(store::providerOf(image));
      if (store == parts_.stores.end()) {
        return Error(ErrorKind::NotFound, "Failed to verify an image of provider '" + store::providerOf(image) +
                                              "': that provider is not enabled (--image_providers)");
      }
      auto key = store->second->keyOf(image);
      if (key.isError()) return key.error();
      keys[store->first].push_back(*key);
    }
    std::vector<Future<store::StoreCheck>> checks;
    for (const char* provider : store::kProviders) {
      auto store = parts_.stores.find(provider);
      if (store == parts_.stores.end() || (!images.empty() && keys.count(provider) == 0)) continue;
      checks.push_back(store->second->verify(images.empty() ? std::vector<std::string>{} : keys[provider]));
    }
    return actors::collect(checks).then(
        [keys](const std::vector<store::StoreCheck>& stores) -> Try<std::vector<ImageCheck>> {
          std::vector<ImageCheck> found;
          std::set<std::string> held;
          for (const auto& checked : stores) {
            for (const auto& image : checked.images) {
              ImageCheck entry{image, {}};
              for (const auto& dir : checked.contentOf.at(image.key())) entry.layers.push_back(checked.checks.at(dir));
              held.insert(image.key());
              found.push_back(std::move(entry));
            }
          }
          for (const auto& [provider, asked] : keys) {
            for (const auto& key : asked) {
              if (held.count(key) == 0) {
                return Error(ErrorKind::NotFound, "Image '" + key + "' is not in the store (pull it first)");
              }
            }
          }
          return found;
        });
  }

  Future<std::vector<ImageRepair>> repairImages(const std::vector<messages::Image>& images) {
    // The requests as the caller made them (their credentials with them).
    auto requests = std::make_shared<std::map<std::string, messages::Image>>();
    for (const auto& image : images) {
      auto store = parts_.stores.find(store::providerOf(image));
      if (store == parts_.stores.end()) continue;  // verifyImages says so
      if (auto key = store->second->keyOf(image); key.isSome()) (*requests)[*key] = image;
    }
    return verifyImages(images).then(actors::defer(self(), [this, requests](const std::vector<ImageCheck>& checks) {
      // Filled before any callback may write into it.
      auto repairs = std::make_shared<std::vector<ImageRepair>>();
      for (const auto& check : checks) repairs->push_back(ImageRepair{check, {}, {}, {}, std::nullopt});
      std::vector<Future<Nothing>> looked;
      for (std::size_t i = 0; i < repairs->size(); ++i) {
        ImageRepair& repair = (*repairs)[i];
        if (repair.found.ok()) continue;
        auto request = requestFor(*requests, repair.found.image);
        if (request.isError()) {
          repair.error = "Not repaired: " + request.error().message;
          continue;
        }
        // The source first: when it cannot give this very image, nothing
        // changes.
        looked.push_back(lookUp(*request)
                             .then([repairs, i](const std::string& digest) {
                               ImageRepair& r = (*repairs)[i];
                               if (digest != r.found.image.manifest_digest()) {
                                 r.error = "Not repaired: its source now has another manifest for it (" + digest +
                                           "; the store has " + r.found.image.manifest_digest() +
                                           "): pull it again to take that one";
                               }
                               return Nothing{};
                             })
                             .repair([repairs, i](const Future<Nothing>& failed) {
                               (*repairs)[i].error = "Not repaired: " + failed.failure().message;
                               return Nothing{};
                             }));
      }
      return actors::collect(looked)
          .then(actors::defer(self(),
                              [this, repairs](const std::vector<Nothing>&) {
                                return underLock<Nothing>(Lock::Write,
                                                          [this, repairs] { return discardDamaged(repairs); });
                              }))
          .then(actors::defer(self(), [this, repairs, requests] { return refetchRepaired(repairs, requests); }))
          .then([repairs] { return *repairs; });
    }));
  }

  // The request to fetch `image` again with: the caller's, or made from its key.
  static Try<messages::Image> requestFor(const std::map<std::string, messages::Image>& requests,
                                         const messages::StoredImage& image) {
    if (auto it = requests.find(image.key()); it != requests.end()) return it->second;
    if (image.key().starts_with("appc:")) {
      return Error(ErrorKind::Unsupported,
                   "Repair of AppC images is not built: remove the image (prune) and fetch it again");
    }
    return store::imageOfKey(image.key());
  }

  Future<std::string> lookUp(const messages::Image& image) {
    auto store = parts_.stores.find(store::providerOf(image));
    if (store == parts_.stores.end()) return Error(ErrorKind::NotFound, "Its provider is not enabled");
    return store->second->lookUp(image);
  }

  // Under the write lock: each damaged layer of an image whose source has
  // it goes to gc/; one a container uses is retired instead (left for the
  // containers, never handed out again; prune removes it once none uses it).
  Future<Nothing> discardDamaged(const std::shared_ptr<std::vector<ImageRepair>>& repairs) {
    return activePaths().then(actors::defer(self(), [this, repairs](const std::set<std::string>& active) {
      std::vector<std::string> doomed, retiring;
      std::set<std::string> seen;
      for (auto& repair : *repairs) {
        if (repair.found.ok() || !repair.error.empty()) continue;
        for (const auto& layer : repair.found.layers) {
          if (layer.ok() || layer.gone) continue;
          if (active.count(layer.rootfs) > 0) {
            repair.inUse.push_back(layer.rootfs);
            if (seen.insert(layer.rootfs).second) retiring.push_back(layer.rootfs);
            continue;
          }
          repair.refetched.push_back(layer.rootfs);
          if (seen.insert(layer.rootfs).second) doomed.push_back(layer.rootfs);
        }
      }
      auto store = parts_.stores.find(store::kDockerProvider);
      if ((doomed.empty() && retiring.empty()) || store == parts_.stores.end()) return Future<Nothing>(Nothing{});
      store::Store* docker = store->second.get();
      // A failure is each image's to tell; the layers that did go are
      // fetched again all the same.
      Future<Nothing> retired = retiring.empty() ? Future<Nothing>(Nothing{}) : docker->retire(retiring);
      Future<Nothing> discarded = doomed.empty() ? Future<Nothing>(Nothing{}) : docker->discard(doomed);
      return actors::await(retired, discarded)
          .then([repairs](const std::tuple<Future<Nothing>, Future<Nothing>>& done) {
            for (const auto& [step, what] : {std::pair{&std::get<0>(done), "retire a damaged layer a container uses"},
                                             std::pair{&std::get<1>(done), "move a damaged layer"}}) {
              if (step->isReady()) continue;
              const std::string why = step->isFailed() ? step->failure().message : "discarded";
              for (auto& repair : *repairs) {
                if (!repair.refetched.empty() || !repair.inUse.empty())
                  repair.error = "Failed to " + std::string(what) + ": " + why;
              }
            }
            return Nothing{};
          });
    }));
  }

  // Each image that lost layers fetched again (a get finds them missing
  // and pulls them, under the read lock as a pull), then checked again.
  Future<Nothing> refetchRepaired(const std::shared_ptr<std::vector<ImageRepair>>& repairs,
                                  const std::shared_ptr<std::map<std::string, messages::Image>>& requests) {
    std::vector<Future<Nothing>> done;
    for (std::size_t i = 0; i < repairs->size(); ++i) {
      const ImageRepair& repair = (*repairs)[i];
      if (repair.refetched.empty() && repair.inUse.empty()) continue;
      auto request = requestFor(*requests, repair.found.image);
      if (request.isError()) continue;  // said when it was looked up
      auto store = parts_.stores.find(store::kDockerProvider);
      if (store == parts_.stores.end()) continue;
      store::Store* docker = store->second.get();
      done.push_back(underLock<store::ImageInfo>(Lock::Read, [docker, image = *request] { return docker->get(image); })
                         .then(actors::defer(self(), [this, image = *request](
                                                         const store::ImageInfo&) { return verifyImages({image}); }))
                         .then([repairs, i](const std::vector<ImageCheck>& after) {
                           if (!after.empty()) (*repairs)[i].after = after.front();
                           return Nothing{};
                         })
                         .repair([repairs, i](const Future<Nothing>& failed) {
                           (*repairs)[i].error = "Failed to fetch it again: " + failed.failure().message;
                           return Nothing{};
                         }));
    }
    return actors::collect(done).then([](const std::vector<Nothing>&) { return Nothing{}; });
  }

  // ---- automatic image GC ----------------------------------------------------

  Future<std::vector<std::string>> collectImages() {
    if (!parts_.imageGc) {
      return Error(ErrorKind::InvalidArgument, "There is no image GC config (--image_gc_config) to collect images by");
    }
    // One check at a time: each reads the disk after the last one's
    // removals are deleted, never counting them twice.
    Future<std::vector<std::string>> next = checking_.then(actors::defer(self(), [this] { return checkImages(); }));
    checking_ = next.then([](const std::vector<std::string>&) { return Nothing{}; })
                    .recover([](const Future<Nothing>&) { return Nothing{}; });
    return next;
  }

  Future<std::vector<std::string>> checkImages() {
    ++gcChecks_;
    // Whether this check went on to remove images: counted with its
    // outcome, in one step.
    auto removing = std::make_shared<bool>(false);
    // What earlier removals moved into gc/ is deleted first: the disk no
    // longer counts it, and this check does not remove more for it.
    return forEachStore([](store::Store& store) { return store.swept(); })
        .then(actors::defer(
            self(),
            [this, removing]() -> Future<std::vector<std::string>> {
              if (parts_.imageGc->leastRecentlyUsed()) return collectLeastRecentlyUsed(removing);
              return diskSpace(parts_.workDir).then(actors::defer(self(), [this, removing](const DiskSpace& space) {
                return collectByHeadroom(space, removing);
              }));
            }))
        .onAny(actors::defer(self(), [this, removing](const Future<std::vector<std::string>>& collected) {
          if (*removing) ++gcPrunes_;
          if (!collected.isReady()) ++gcFailures_;  // the next check tries again
        }));
  }

  // The file system holding `dir`. IO error for one that reports no size.
  static Try<DiskSpace> spaceOf(const DiskSpaceOf& space, const std::string& dir) {
    auto got = space(dir);
    if (got.isSome() && got->total == 0) {
      return Error(ErrorKind::IO, "The file system of '" + dir + "' reports a size of 0");
    }
    return got;
  }

  // statvfs blocks: on the blocking pool.
  Future<DiskSpace> diskSpace(const std::string& dir) {
    return actors::async(runtime_, [space = parts_.diskSpace, dir] { return spaceOf(space, dir); });
  }

  // Mesos's policy: below the headroom, pruneImages(excluded_images).
  Future<std::vector<std::string>> collectByHeadroom(const DiskSpace& space, const std::shared_ptr<bool>& removing) {
    const ImageGcConfig& gc = *parts_.imageGc;
    const double free = static_cast<double>(space.available) / static_cast<double>(space.total);
    if (free >= gc.imageDiskHeadroom) return std::vector<std::string>{};
    actors::log(actors::LogLevel::Info, "gc.headroom",
                {{"free", std::to_string(free)}, {"headroom", std::to_string(gc.imageDiskHeadroom)}});
    *removing = true;
    return images().then(actors::defer(self(), [this](const std::vector<messages::StoredImage>& before) {
      return pruneImages(parts_.imageGc->excludedImages)
          .then(actors::defer(self(), [this] { return images(); }))
          .then(actors::defer(self(), [this, before](const std::vector<messages::StoredImage>& after) {
            std::set<std::string> left;
            for (const auto& image : after) left.insert(image.key());
            std::vector<std::string> removed;
            for (const auto& image : before) {
              if (left.count(image.key()) == 0) removed.push_back(image.key());
            }
            gcRemoved_ += removed.size();
            return removed;
          }));
    }));
  }

  // The kubelet's policy. Planned without the lock first, so that a check
  // with nothing to do never holds provisions up; then planned again, the
  // disk read again, under the write lock (no provision starts using an
  // image meanwhile), and carried out.
  Future<std::vector<std::string>> collectLeastRecentlyUsed(const std::shared_ptr<bool>& removing) {
    return planLeastRecentlyUsed().then(
        actors::defer(self(), [this, removing](const Collection& first) -> Future<std::vector<std::string>> {
          if (first.plan.need <= 0) return std::vector<std::string>{};
          if (!first.plan.removes()) {  // the disk is full of what no check may remove
            logCollection(first.plan);
            return std::vector<std::string>{};
          }
          return underLock<std::vector<std::string>>(Lock::Write, [this, removing] {
            return planLeastRecentlyUsed().then(actors::defer(
                self(), [this, removing](const Collection& planned) { return removePlanned(planned, removing); }));
          });
        }));
  }

  // A plan, and the paths the containers use, which no removal may take.
  struct Collection {
    CollectionPlan plan;
    std::set<std::string> active;
  };

  // The stores' usage, then their file systems (statvfs: on the blocking
  // pool), then the plan.
  Future<Collection> planLeastRecentlyUsed() {
    return activePaths().then(actors::defer(self(), [this](const std::set<std::string>& active) {
      return storeUsage().then(actors::defer(self(), [this, active](const ProviderUsage& stores) {
        auto spaces = actors::async(runtime_,
                                    [space = parts_.diskSpace, stores]() -> Try<std::map<std::string, DiskSpace>> {
                                      std::map<std::string, DiskSpace> byProvider;
                                      for (const auto& [provider, usage] : stores) {
                                        auto got = spaceOf(space, usage.directory);
                                        if (got.isError()) return got.error();
                                        byProvider[provider] = *got;
                                      }
                                      return byProvider;
                                    });
        return spaces.then(
            actors::defer(self(), [this, active, stores](const std::map<std::string, DiskSpace>& byProvider) {
              const ImageGcConfig& gc = *parts_.imageGc;
              std::set<std::string> kept = imagesInUse();
              for (const auto& image : gc.excludedImages) {
                for (const auto& [provider, store] : parts_.stores) {
                  if (auto key = store->keyOf(image); key.isSome()) kept.insert(*key);
                }
              }
              const auto now = static_cast<std::int64_t>(std::time(nullptr));
              return Collection{planCollection(stores, byProvider, gc, kept, active, now), active};
            }));
      }));
    }));
  }

  Future<std::vector<std::string>> removePlanned(const Collection& collection, const std::shared_ptr<bool>& removing) {
    const CollectionPlan& plan = collection.plan;
    if (plan.need <= 0 || !plan.removes()) return std::vector<std::string>{};
    logCollection(plan);
    std::vector<std::string> removed;
    for (const auto& [provider, keys] : plan.keys) removed.insert(removed.end(), keys.begin(), keys.end());
    *removing = true;
    gcRemoved_ += removed.size();
    // Each store with images to forget or content no image is made of.
    std::vector<Future<Nothing>> removals;
    for (const auto& [provider, store] : parts_.stores) {
      auto keys = plan.keys.find(provider);
      if (keys == plan.keys.end() && plan.orphans.count(provider) == 0) continue;
      removals.push_back(
          store->remove(keys == plan.keys.end() ? std::vector<std::string>{} : keys->second, collection.active));
    }
    return actors::collect(removals).then([removed](const std::vector<Nothing>&) { return removed; });
  }

  static void logCollection(const CollectionPlan& plan) {
    actors::log(plan.enough ? actors::LogLevel::Info : actors::LogLevel::Warn, "gc.collect",
                {{"need_bytes", std::to_string(plan.need)},
                 {"freed_bytes", std::to_string(plan.freed)},
                 {"images", std::to_string(plan.count())},
                 {"enough", plan.enough ? "true" : "false"}});
  }

  std::vector<ContainerInfo> containers() {
    std::vector<ContainerInfo> all;
    for (const auto& [id, info] : infos_) all.push_back(ContainerInfo{id, info->rootfses});
    return all;
  }

  Future<std::vector<messages::StoredImage>> images() {
    std::vector<Future<std::vector<messages::StoredImage>>> stores;
    for (const char* provider : store::kProviders) {
      if (auto it = parts_.stores.find(provider); it != parts_.stores.end()) stores.push_back(it->second->images());
    }
    return actors::collect(stores).then([](const std::vector<std::vector<messages::StoredImage>>& lists) {
      std::vector<messages::StoredImage> all;
      for (const auto& list : lists) all.insert(all.end(), list.begin(), list.end());
      return all;
    });
  }

  std::map<std::string, double> metrics() {
    return {
        {"containerizer/mesos/provisioner/remove_container_errors", static_cast<double>(removeContainerErrors_)},
        {"containerizer/mesos/provisioner/docker_store/image_pull_ms", pullMs_[store::kDockerProvider]},
        {"provisioner/appc_store/image_fetch_ms", pullMs_[store::kAppcProvider]},
        {"provisioner/containers", static_cast<double>(infos_.size())},
        {"provisioner/provisions", static_cast<double>(provisions_)},
        {"provisioner/destroys", static_cast<double>(destroys_)},
        {"provisioner/image_prunes", static_cast<double>(prunes_)},
        {"provisioner/image_gc_checks", static_cast<double>(gcChecks_)},
        {"provisioner/image_gc_prunes", static_cast<double>(gcPrunes_)},
        {"provisioner/image_gc_failures", static_cast<double>(gcFailures_)},
        {"provisioner/image_gc_removed_images", static_cast<double>(gcRemoved_)},
    };
  }

 private:
  enum class Lock { Read, Write };

  // work() on this actor under the lock, which is released once the work is
  // over, and only if it was granted: an acquisition discarded while it
  // waited was never held.
  template <typename T>
  Future<T> underLock(Lock kind, std::function<Future<T>()> work) {
    Future<Nothing> locked = kind == Lock::Write ? lock_.writeLock() : lock_.readLock();
    Future<T> result = locked.then(actors::defer(self(), std::move(work)));
    result.onAny(actors::defer(self(), [this, locked, kind] {
      if (!locked.isReady()) return;
      kind == Lock::Write ? lock_.writeUnlock() : lock_.readUnlock();
    }));
    return result;
  }

  // The store serving `image`'s provider, asked for it; none when that
  // provider is off.
  std::optional<Future<store::ImageInfo>> getImage(const messages::Image& image) {
    auto it = parts_.stores.find(store::providerOf(image));
    if (it == parts_.stores.end()) return std::nullopt;
    return it->second->get(image);
  }

  // `call` on every store at once; READY when each is.
  template <typename Call>
  Future<Nothing> forEachStore(Call&& call) {
    std::vector<Future<Nothing>> all;
    for (const char* provider : store::kProviders) {
      if (auto it = parts_.stores.find(provider); it != parts_.stores.end()) all.push_back(call(*it->second));
    }
    return actors::collect(all).then([](const std::vector<Nothing>&) { return Nothing{}; });
  }

  backend::Backend* backend(const std::string& name) {
    auto it = parts_.backends.find(name);
    return it == parts_.backends.end() ? nullptr : it->second.get();
  }

  // Writes the record of the container whose directory is `dir`.
  // Atomic, not fsynced (as Mesos's checkpoints): the record guards layers
  // against GC while this process runs and lets recover find rootfses after
  // the process dies, and the page cache outlives the process. A machine
  // crash takes every mount with it; recover then finds the rootfs
  // directories on disk even where a record came out empty. An fsync here
  // costs half the time of a provision.
  Future<Nothing> writeRecord(const std::string& dir, const ContainerRecord& record) {
    std::string bytes;
    record.SerializeToString(&bytes);
    return actors::async(
        runtime_, [dir, bytes] { return store::writeFileAtomically(paths::record(dir), bytes, /*sync=*/false); });
  }

  // The same, making `dir` first when missing, and `rootfses` after.
  Future<Nothing> createRecord(const std::string& dir, const ContainerRecord& record, const std::string& rootfses) {
    std::string bytes;
    record.SerializeToString(&bytes);
    return actors::async(runtime_, [dir, bytes, rootfses]() -> Try<Nothing> {
      auto made = actors::fs::makeDirectories(dir);
      if (made.isError()) return made.error();
      auto written = store::writeFileAtomically(paths::record(dir), bytes, /*sync=*/false);
      if (written.isError()) return written;
      auto below = actors::fs::makeDirectoriesBelow(dir, rootfses);  // new, usually: from the top down
      if (below.isError()) return below.error();
      return Nothing{};
    });
  }

  // A rootfs that was not made: out of the record (and off the disk).
  Future<Nothing> forgetRootfs(const std::string& id, const std::string& rootfsId) {
    auto it = infos_.find(id);
    if (it == infos_.end()) return Nothing{};
    auto& rootfses = it->second->rootfses;
    std::erase_if(rootfses, [&](const ContainerRootfs& r) { return r.id() == rootfsId; });
    ContainerRecord record;
    for (const auto& r : rootfses) *record.add_rootfses() = r;
    return writeRecord(paths::container(root_, id), record).recover([](const Future<Nothing>&) { return Nothing{}; });
  }

  void scheduleGcCheck() {
    runtime_.clock().sleep(parts_.imageGc->imageDiskWatchInterval).onAny(actors::defer(self(), [this] {
      collectImages().onAny(actors::defer(self(), [this](const Future<std::vector<std::string>>& collected) {
        if (!collected.isReady()) {
          actors::log(actors::LogLevel::Warn, "gc.failed",
                      {{"error", collected.isFailed() ? collected.failure().message : "discarded"}});
        }
        scheduleGcCheck();
      }));
    }));
  }

  // Rootfses being made at once, per blocking-pool thread: enough to keep
  // the pool busy across the hops between a provision's steps.
  static constexpr std::size_t kAssemblingPerBlockingThread = 4;

  actors::Runtime& runtime_;
  Provisioner::Parts parts_;
  const std::string root_;
  actors::ReadWriteLock lock_;
  actors::Slots assembling_;  // rootfses being made (makeRootfs to the record saying so)
  std::map<std::string, std::shared_ptr<Info>> infos_;
  std::optional<Future<std::string>> suitedBackend_;  // the host's probed, when Parts left defaultBackend empty
  std::uint64_t removeContainerErrors_ = 0, provisions_ = 0, destroys_ = 0, prunes_ = 0, gcChecks_ = 0;
  std::uint64_t gcPrunes_ = 0, gcFailures_ = 0;  // automatic prunes or removals started, and checks failed
  std::uint64_t gcRemoved_ = 0;                  // images automatic GC removed
  Future<Nothing> checking_ = Nothing{};         // the last image GC check, ended either way
  bool storesRecovered_ = false;                 // their recover() ended, either way
  std::vector<std::string> untouched_;           // image keys to touch once they have
  std::map<std::string, double> pullMs_;         // by provider: the last image pull's time
  PullDurations pullDurations_;
};

Try<std::unique_ptr<Provisioner>> Provisioner::create(Parts parts, actors::Runtime& runtime) {
  if (parts.workDir.empty()) return Error(ErrorKind::InvalidArgument, "The provisioner needs a work dir");
  if (!parts.defaultBackend.empty() && parts.backends.count(parts.defaultBackend) == 0) {
    return Error(ErrorKind::InvalidArgument, "The default backend '" + parts.defaultBackend + "' is not available");
  }
  // Private to root (a wider one narrowed): the rootfses below hold image
  // content, setuid binaries and device nodes included.
  auto made = actors::fs::makePrivateDirectory(paths::root(parts.workDir), 0700);
  if (made.isError()) return made.error();
  made = actors::fs::makeDirectories(paths::children(paths::root(parts.workDir)));
  if (made.isError()) return made.error();
  auto lock = lockWorkDir(parts.workDir, parts.lockTimeout, parts.onLockWait);
  if (lock.isError()) return lock.error();
  auto process = std::make_unique<ProvisionerProcess>(runtime, std::move(parts));
  return std::unique_ptr<Provisioner>(new Provisioner(std::move(process), runtime, actors::fs::Fd(*lock)));
}

struct Provisioner::Owned {
  Owned(std::unique_ptr<ProvisionerProcess> p, actors::Runtime& runtime, actors::fs::Fd l)
      : lock(std::move(l)), process(runtime, std::move(p)) {}
  actors::fs::Fd lock;  // released after the process stopped (members go in reverse order)
  actors::ProcessOwner<ProvisionerProcess> process;
};

Provisioner::Provisioner(std::unique_ptr<ProvisionerProcess> process, actors::Runtime& runtime, actors::fs::Fd lock)
    : runtime_(runtime), owned_(std::make_unique<Owned>(std::move(process), runtime, std::move(lock))) {}

Provisioner::~Provisioner() {
  if (!runtime_.onRuntimeThread()) return;  // owned_ goes here, waiting as it must
  // The last reference travels with the thread's function.
  std::shared_ptr<Owned> owned(std::move(owned_));
  runtime_.offload([owned = std::move(owned)]() mutable { owned.reset(); });
}

Future<Nothing> Provisioner::recover(const std::set<std::string>& known) {
  return owned_->process.dispatch(&ProvisionerProcess::recover, known);
}

Future<ProvisionInfo> Provisioner::provision(const std::string& id, const messages::Image& image) {
  return owned_->process.dispatch(&ProvisionerProcess::provision, id, image);
}

Future<std::string> Provisioner::writeBundle(const std::string& id, const ProvisionInfo& provisioned,
                                             const BundleOptions& options) {
  return owned_->process.dispatch(&ProvisionerProcess::writeBundle, id, provisioned, options);
}

Future<bool> Provisioner::destroy(const std::string& id) {
  return owned_->process.dispatch(&ProvisionerProcess::destroy, id);
}

Future<messages::StoredImage> Provisioner::pullImage(const messages::Image& image) {
  return owned_->process.dispatch(&ProvisionerProcess::pullImage, image);
}

Future<Nothing> Provisioner::pruneImages(const std::vector<messages::Image>& excluded) {
  return owned_->process.dispatch(&ProvisionerProcess::pruneImages, excluded);
}

Future<Nothing> Provisioner::quiesce() { return owned_->process.dispatch(&ProvisionerProcess::idle); }

Future<std::vector<ContainerInfo>> Provisioner::containers() {
  return owned_->process.dispatch(&ProvisionerProcess::containers);
}

Future<std::vector<ImageUsage>> Provisioner::imageUsage() {
  return owned_->process.dispatch(&ProvisionerProcess::imageUsage);
}

Future<std::vector<ImageCheck>> Provisioner::verifyImages(const std::vector<messages::Image>& images) {
  return owned_->process.dispatch(&ProvisionerProcess::verifyImages, images);
}

Future<std::vector<ImageRepair>> Provisioner::repairImages(const std::vector<messages::Image>& images) {
  return owned_->process.dispatch(&ProvisionerProcess::repairImages, images);
}

Future<std::vector<std::string>> Provisioner::collectImages() {
  return owned_->process.dispatch(&ProvisionerProcess::collectImages);
}

Future<std::vector<messages::StoredImage>> Provisioner::images() {
  return owned_->process.dispatch(&ProvisionerProcess::images);
}

Future<std::map<std::string, double>> Provisioner::metrics() {
  return owned_->process.dispatch(&ProvisionerProcess::metrics);
}

Future<std::string> Provisioner::metricsText() { return owned_->process.dispatch(&ProvisionerProcess::metricsText); }

Try<std::set<std::string>> Provisioner::containersOnDisk(const std::string& workDir) {
  auto found = scanContainers(paths::root(workDir));
  if (found.isError()) return found.error();
  std::set<std::string> ids;
  for (const auto& c : *found) ids.insert(c.id);
  return ids;
}

}  // namespace prov::provisioner
