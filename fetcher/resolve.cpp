// RegistryClient::resolve: reference -> index (maybe) -> platform manifest
// -> config, at each of the reference's repositories in turn.

#include "fetcher/reference.hpp"
#include "fetcher/registry.hpp"

namespace prov::fetcher {

using actors::Future;

namespace {

struct Attempt {
  std::shared_ptr<RegistryClient> client;
  messages::ImageReference reference;
  messages::Platform platform;
  std::vector<Repository> repositories;
  std::function<void(const messages::ResolvedImage&)> manifestSeen;
};

Future<messages::ResolvedImage> withConfig(const std::shared_ptr<Attempt>& attempt, const Repository& repository,
                                           FetchedManifest fetched, std::string indexDigest) {
  messages::ResolvedImage resolved;
  *resolved.mutable_reference() = attempt->reference;
  resolved.set_manifest_digest(fetched.digest);
  resolved.set_index_digest(indexDigest);
  resolved.set_endpoint(repository.endpoint.toString());
  *resolved.mutable_manifest() = std::get<messages::Manifest>(fetched.document);
  const std::string what = "Failed to resolve '" + toString(attempt->reference) + "'";
  if (resolved.manifest().kind() == messages::Manifest::DOCKER_SCHEMA1) {
    auto config = schema1Config(resolved.manifest());
    if (config.isError()) return config.error().withContext(what);
    *resolved.mutable_config() = std::move(*config);
    return resolved;
  }
  if (attempt->manifestSeen) attempt->manifestSeen(resolved);
  return attempt->client->readBlob(repository, resolved.manifest().config(), kMaxConfigBytes)
      .then([resolved, what](const std::string& json) mutable -> Future<messages::ResolvedImage> {
        auto config = parseImageConfig(json);
        if (config.isError()) return config.error().withContext(what);
        const auto& manifest = resolved.manifest();
        if (config->diff_ids_size() != manifest.layers_size()) {
          return Error(ErrorKind::Corruption, what + ": the manifest has " + std::to_string(manifest.layers_size()) +
                                                  " layers, the config's rootfs " +
                                                  std::to_string(config->diff_ids_size()) + " diff_ids");
        }
        *resolved.mutable_config() = std::move(*config);
        resolved.set_config_json(json);
        return resolved;
      });
}

Future<messages::ResolvedImage> resolveAt(const std::shared_ptr<Attempt>& attempt, const Repository& repository) {
  const auto& reference = attempt->reference;
  const std::string tagOrDigest = reference.digest().empty() ? reference.tag() : reference.digest();
  return attempt->client->fetchManifest(repository, tagOrDigest)
      .then([attempt, repository](const FetchedManifest& fetched) -> Future<messages::ResolvedImage> {
        if (std::holds_alternative<messages::Manifest>(fetched.document)) {
          return withConfig(attempt, repository, fetched, "");
        }
        const auto& index = std::get<messages::Index>(fetched.document);
        auto chosen = selectManifest(index, attempt->platform);
        if (chosen.isError())
          return chosen.error().withContext("Failed to resolve '" + toString(attempt->reference) + "'");
        const std::string indexDigest = fetched.digest;
        return attempt->client->fetchManifest(repository, chosen->digest())
            .then([attempt, repository, indexDigest](const FetchedManifest& child) -> Future<messages::ResolvedImage> {
              if (!std::holds_alternative<messages::Manifest>(child.document)) {
                return Error(ErrorKind::Corruption, "Failed to resolve '" + toString(attempt->reference) +
                                                        "': the index points at another index");
              }
              return withConfig(attempt, repository, child, indexDigest);
            });
      });
}

// Tries repositories[i], then the next ones; reports the last one's error.
Future<messages::ResolvedImage> resolveFrom(const std::shared_ptr<Attempt>& attempt, std::size_t i) {
  Future<messages::ResolvedImage> result = resolveAt(attempt, attempt->repositories[i]);
  if (i + 1 == attempt->repositories.size()) return result;
  return result.repair([attempt, i](const Future<messages::ResolvedImage>&) { return resolveFrom(attempt, i + 1); });
}

}  // namespace

Future<messages::ResolvedImage> RegistryClient::resolve(
    const messages::ImageReference& reference, const messages::Platform& platform,
    const std::optional<messages::Credentials>& credentials,
    std::function<void(const messages::ResolvedImage&)> manifestSeen) {
  auto repositories = this->repositories(reference, credentials);
  if (repositories.isError()) return repositories.error();
  auto attempt = std::make_shared<Attempt>(
      Attempt{shared_from_this(), reference, platform, std::move(*repositories), std::move(manifestSeen)});
  return resolveFrom(attempt, 0);
}

}  // namespace prov::fetcher
