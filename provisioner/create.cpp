// Provisioner::create(flags): the flags checked and turned into parts.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "actors/fs.hpp"
#include "fetcher/auth.hpp"
#include "fetcher/local/local.hpp"
#include "fetcher/proxy.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "fetcher/sigstore.hpp"
#include "fetcher/url.hpp"
#include "provisioner/paths.hpp"
#include "provisioner/provisioner.hpp"
#include "store/appc_store.hpp"
#include "store/atomic_file.hpp"
#include "store/paths.hpp"
#include "store/trust.hpp"

namespace prov::provisioner {

namespace {

Error badFlag(const std::string& flag, const std::string& why) {
  return Error(ErrorKind::InvalidArgument, "Invalid --" + flag + ": " + why);
}

// A store dir as the store will name it: absolute, made (private to root)
// when missing, then canonical, so that a trailing slash or a symlink in
// the flag never makes the same store look like another (prune compares
// paths). Empty: `fallback`, already canonical.
Try<std::string> storeDirOf(const char* flag, const std::string& value, const std::string& fallback) {
  if (value.empty()) return fallback;
  if (value.front() != '/') return badFlag(flag, "'" + value + "' is not an absolute path");
  auto made = actors::fs::makePrivateDirectory(value, 0700);
  if (made.isError()) return badFlag(flag, made.error().message);
  std::error_code ec;
  const std::string canonical = std::filesystem::canonical(value, ec).string();
  if (ec) return badFlag(flag, "'" + value + "': " + ec.message());
  return canonical;
}

Try<std::set<std::string>> providersOf(const std::string& text) {
  std::set<std::string> providers;
  std::stringstream in(text);
  std::string token;
  while (std::getline(in, token, ',')) {
    std::transform(token.begin(), token.end(), token.begin(), [](unsigned char c) { return std::tolower(c); });
    if (token.empty()) continue;
    if (token != store::kDockerProvider && token != store::kAppcProvider) {
      return badFlag("image_providers", "unknown image provider '" + token + "' (known: docker, appc)");
    }
    providers.insert(token);
  }
  return providers;
}

// The loopback and insecure registries found not to speak TLS, kept in the
// docker store's "plain-registries" (one "host:port" per line) so that a
// later command goes to them over http directly instead of paying a TLS
// attempt first. A cache: absent (a store from before it) or unreadable
// is empty; a line that is not a host:port is ignored.
class PlainRegistries {
 public:
  explicit PlainRegistries(std::string path) : path_(std::move(path)) {
    // Through a close-on-exec descriptor (std::ifstream's is not).
    auto text = actors::fs::readFile(path_);
    std::istringstream in(text.isSome() ? *text : std::string());
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.size() < 300 && line.find_first_of(" \t/") == std::string::npos &&
          line.find(':') != std::string::npos) {
        known_.insert(line);
      }
    }
  }
  std::set<std::string> known() const {
    std::lock_guard lock(mutex_);
    return known_;
  }
  // On a network thread, once per registry and process: a small write
  // without fsync, done before the request goes on (so a command that ends
  // right after has it saved).
  void found(const std::string& hostPort, bool plain) {
    std::lock_guard lock(mutex_);
    if (plain ? !known_.insert(hostPort).second : known_.erase(hostPort) == 0) return;
    std::string text;
    for (const auto& origin : known_) text += origin + "\n";
    // Best effort: without it the next command pays one TLS attempt to a
    // listed insecure registry (a loopback one is asked plain first).
    (void)store::writeFileAtomically(path_, text, /*sync=*/false);
  }

 private:
  const std::string path_;
  mutable std::mutex mutex_;
  std::set<std::string> known_;
};

// The pullers for --docker_registry (a URL or a directory of tarballs) and
// the local sources; `storeDir` keeps what the registry client learns.
// `lookaside` is set to what reads signatures over http(s) (the registry
// client's connections, proxies and CAs).
Try<store::PullerFor> pullersFor(const Flags& flags, actors::Runtime& runtime, const std::string& storeDir,
                                 store::Trust::HttpGet& lookaside, store::Trust::AttachmentsGet& attachments) {
  std::shared_ptr<fetcher::Puller> registry;
  if (!flags.dockerRegistry.empty() && flags.dockerRegistry.front() == '/') {
    auto tarballs = fetcher::DockerArchivePuller::create(runtime, flags.dockerRegistry);
    if (tarballs.isError()) return tarballs.error();
    registry = std::move(*tarballs);
  } else {
    fetcher::RegistryOptions options;
    options.hubUrl = flags.dockerRegistry;
    options.insecure.insert(flags.dockerInsecureRegistries.begin(), flags.dockerInsecureRegistries.end());
    options.mirrors = flags.dockerRegistryMirrors;
    options.http.extraCaFile = flags.dockerRegistryCa;
    auto proxy = fetcher::proxyFromEnvironment();
    if (proxy.isError()) return proxy.error();
    options.http.proxy = std::move(*proxy);
    auto plain = std::make_shared<PlainRegistries>(storeDir + "/plain-registries");
    options.http.plainOrigins = plain->known();
    options.http.onPlainFound = [plain](const std::string& hostPort, bool isPlain) { plain->found(hostPort, isPlain); };
    options.maxUnsizedBlobBytes = flags.limits.maxLayerBytes;
    if (!flags.dockerConfig.empty()) {
      auto auths = fetcher::loadDockerConfig(flags.dockerConfig);
      if (auths.isError()) return badFlag("docker_config", auths.error().message);
      options.auths = std::move(*auths);
      auto helpers = fetcher::loadCredentialHelpers(flags.dockerConfig);
      if (helpers.isError()) return badFlag("docker_config", helpers.error().message);
      options.helpers = std::move(*helpers);
    }
    auto puller = fetcher::RegistryPuller::create(runtime, std::move(options));
    if (puller.isError()) return badFlag("docker_registry", puller.error().message);
    std::shared_ptr<fetcher::RegistryPuller> shared = std::move(*puller);
    // The registry's TLS context, made beside the recover, for a command
    // whose first request will use it (not for one that goes plain first).
    auto& http = shared->client().http();
    if (!flags.pullsFrom.empty()) {
      auto first = fetcher::parseUrl("https://" + flags.pullsFrom + "/v2/");
      if (first.isSome() && !http.reachesPlain(*first)) http.prepareTls();
    }
    lookaside = [shared](fetcher::HttpRequest request) { return shared->client().http().fetch(std::move(request)); };
    attachments = [shared](const messages::Image& image, const std::string& manifestDigest) {
      std::optional<messages::Credentials> credentials;
      if (image.has_credentials()) credentials = image.credentials();
      return fetcher::sigstore::readAttachments(shared->client().shared_from_this(),
                                                fetcher::normalize(image.reference()), credentials, manifestDigest);
    };
    registry = std::move(shared);
  }
  auto oci = fetcher::OciLayoutPuller::create(runtime);
  if (oci.isError()) return oci.error();
  auto archive = fetcher::DockerArchivePuller::create(runtime);
  if (archive.isError()) return archive.error();
  std::shared_ptr<fetcher::Puller> ociPuller = std::move(*oci), archivePuller = std::move(*archive);
  return store::PullerFor([registry, ociPuller, archivePuller](const messages::Image& image) {
    switch (image.type()) {
      case messages::Image::DOCKER: return registry;
      case messages::Image::OCI_LAYOUT: return ociPuller;
      case messages::Image::DOCKER_ARCHIVE: return archivePuller;
      default: return std::shared_ptr<fetcher::Puller>();
    }
  });
}

// The "docker" provider's store: Docker/OCI images from the registry and
// the local sources.
Try<std::unique_ptr<store::Store>> dockerStoreFor(const Flags& flags, actors::Runtime& runtime,
                                                  const std::string& workDir,
                                                  const std::shared_ptr<store::Extractor>& extractor) {
  auto storeDir = storeDirOf("docker_store_dir", flags.dockerStoreDir, paths::dockerStore(workDir));
  if (storeDir.isError()) return storeDir.error();
  store::Trust::HttpGet lookaside;
  store::Trust::AttachmentsGet attachments;
  auto pullerFor = pullersFor(flags, runtime, *storeDir, lookaside, attachments);
  if (pullerFor.isError()) return pullerFor.error();
  store::ImageStoreOptions options;
  if (!flags.signaturePolicy.empty()) {
    auto trust = store::Trust::load(
        runtime, store::TrustOptions{flags.signaturePolicy, flags.registriesDir, store::paths::trustRecords(*storeDir)},
        std::move(lookaside), std::move(attachments));
    if (trust.isError()) {
      // RegistriesD's errors (fetcher/registries_d.cpp) begin so.
      const std::string& why = trust.error().message;
      const bool registries = why.starts_with("Invalid registries.d") || why.starts_with("The registries.d");
      return badFlag(registries ? "registries_d" : "signature_policy", trust.error().message);
    }
    options.trust = std::move(*trust);
  } else if (!flags.registriesDir.empty()) {
    return badFlag("registries_d", "it is read only with --signature_policy");
  }
  options.storeDir = *storeDir;
  options.limits = flags.limits;
  options.progress = flags.progress;
  options.extractor = extractor;
  auto store = store::ImageStore::create(runtime, options, std::move(*pullerFor));
  if (store.isError()) return badFlag("docker_store_dir", store.error().message);
  return std::unique_ptr<store::Store>(std::move(*store));
}

// The "appc" provider's store: AppC images by simple discovery.
Try<std::unique_ptr<store::Store>> appcStoreFor(const Flags& flags, actors::Runtime& runtime,
                                                const std::string& workDir,
                                                const std::shared_ptr<store::Extractor>& extractor) {
  fetcher::AppcFetchOptions fetch;
  fetch.prefix = flags.appcSimpleDiscoveryUriPrefix;
  fetch.http.extraCaFile = flags.dockerRegistryCa;
  auto proxy = fetcher::proxyFromEnvironment();
  if (proxy.isError()) return proxy.error();
  fetch.http.proxy = std::move(*proxy);
  fetch.maxBytes = flags.limits.maxLayerBytes;
  auto fetcher = fetcher::AppcFetcher::create(runtime, std::move(fetch));
  if (fetcher.isError()) return fetcher.error();
  store::AppcStoreOptions options;
  auto storeDir = storeDirOf("appc_store_dir", flags.appcStoreDir, paths::appcStore(workDir));
  if (storeDir.isError()) return storeDir.error();
  options.storeDir = *storeDir;
  options.limits = flags.limits;
  options.extractor = extractor;
  auto store = store::AppcStore::create(runtime, options, std::move(*fetcher));
  if (store.isError()) return badFlag("appc_store_dir", store.error().message);
  return std::unique_ptr<store::Store>(std::move(*store));
}

}  // namespace

Try<std::unique_ptr<Provisioner>> Provisioner::create(const Flags& flags, actors::Runtime& runtime) {
  if (flags.workDir.empty() || flags.workDir.front() != '/') {
    return badFlag("work_dir", "'" + flags.workDir + "' is not an absolute path");
  }
  // Others may pass through the work dir (0711: an embedder's own
  // directories may live there) but not list it; what the provisioner keeps
  // in it is private to root (Provisioner::create, the stores).
  auto made = actors::fs::makePrivateDirectory(flags.workDir, 0711);
  if (made.isError()) return badFlag("work_dir", made.error().message);
  std::error_code ec;
  const std::string workDir = std::filesystem::canonical(flags.workDir, ec).string();
  if (ec) return badFlag("work_dir", ec.message());
  auto providers = providersOf(flags.imageProviders);
  if (providers.isError()) return providers.error();
  // One store only for a process that uses one; not with image GC, whose
  // checks weigh every store's images together.
  if (flags.imageGcConfig.empty() && providers->count(flags.onlyProvider) > 0) *providers = {flags.onlyProvider};
  for (const auto& [flag, value] :
       {std::pair<const char*, std::uint64_t>{"max_layer_bytes", flags.limits.maxLayerBytes},
        {"max_layer_entries", flags.limits.maxEntries},
        {"max_image_bytes", flags.limits.maxImageBytes},
        {"max_image_layers", flags.limits.maxImageLayers}}) {
    if (value == 0) return badFlag(flag, "0 would refuse every image");
  }

  Parts parts;
  parts.workDir = workDir;
  parts.lockTimeout = flags.lockTimeout;
  parts.onLockWait = flags.onLockWait;
  parts.backends = backend::createBackends(
      runtime, backend::BackendOptions{.overlayVolatile = flags.overlayVolatile, .overlayViewRoot = workDir});
  if (parts.backends.empty()) return Error(ErrorKind::Unsupported, "No rootfs backend can run on this machine");
  std::string available;
  for (const auto& [name, b] : parts.backends) available += (available.empty() ? "" : ", ") + name;
  // Without --image_provisioner_backend the backend is chosen at the first
  // provision, not here: choosing probes the host (its file systems, the
  // work dir's d_type, which on an empty work dir writes a probe directory):
  // 1-2% of a tiny pull's 22 ms, and more of an `images` on an empty work
  // dir, while a pull, a listing or a destroy needs no new rootfs.
  // --overlay_volatile is checked against it, so with that flag it is
  // chosen now.
  parts.defaultBackend = flags.imageProvisionerBackend;
  if (parts.defaultBackend.empty() && flags.overlayVolatile) {
    parts.defaultBackend = backend::defaultBackend(paths::root(workDir));
  }
  if (flags.overlayVolatile && parts.defaultBackend != backend::kOverlay) {
    return badFlag("overlay_volatile",
                   "it is for the overlay backend, and the backend is '" + parts.defaultBackend + "'");
  }
  if (!parts.defaultBackend.empty() && parts.backends.count(parts.defaultBackend) == 0) {
    return badFlag("image_provisioner_backend",
                   "backend '" + parts.defaultBackend + "' cannot run here (available: " + available + ")");
  }
  if (!flags.imageGcConfig.empty()) {
    auto gc = parseImageGcConfig(flags.imageGcConfig);
    if (gc.isError()) return gc.error();
    parts.imageGc = *gc;
  }
  // One extractor for every store: one bound on the node's extractions.
  auto extractor = std::make_shared<store::Extractor>(runtime);
  for (const std::string provider : store::kProviders) {
    if (providers->count(provider) == 0) continue;
    auto store = provider == store::kAppcProvider ? appcStoreFor(flags, runtime, workDir, extractor)
                                                  : dockerStoreFor(flags, runtime, workDir, extractor);
    if (store.isError()) return store.error();
    parts.stores[provider] = std::move(*store);
  }
  return create(std::move(parts), runtime);
}

}  // namespace prov::provisioner
