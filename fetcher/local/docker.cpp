// DockerArchivePuller: `docker save` archives, one file or a directory of
// them (local.hpp).

#include <algorithm>
#include <optional>

#include "actors/async.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/local/archive.hpp"
#include "fetcher/local/docker.hpp"
#include "fetcher/local/local.hpp"
#include "fetcher/manifest.hpp"
#include "fetcher/reference.hpp"

namespace prov::fetcher {

using actors::Future;

namespace {

using local::ArchiveImage;
using local::ArchiveIndex;

constexpr std::size_t kMetadataBudget = 64u << 20;  // json captured in the first pass

std::size_t captureLimit(const std::string& name) {
  if (name == "manifest.json" || name == "repositories") return kMaxManifestBytes;
  const auto slash = name.find('/');
  if (slash == std::string::npos) return name.ends_with(".json") ? kMaxConfigBytes : 0;
  const bool layerJson = name.find('/', slash + 1) == std::string::npos && name.substr(slash + 1) == "json";
  return layerJson ? kMaxConfigBytes : 0;
}

const char* layerType(const std::string& magic) {
  if (magic.starts_with("\x1f\x8b")) return mediatype::kOciLayerGzip;
  if (magic.starts_with("\x28\xb5\x2f\xfd")) return mediatype::kOciLayerZstd;
  return mediatype::kOciLayer;
}

bool matches(const std::string& repoTag, const messages::ImageReference& wanted) {
  auto parsed = parseNormalized(repoTag);
  if (parsed.isError()) return false;
  if (wanted.repository().empty()) return parsed->tag() == wanted.tag();
  const auto w = normalize(wanted);
  return parsed->registry() == w.registry() && parsed->repository() == w.repository() &&
         (w.tag().empty() || parsed->tag() == w.tag());
}

std::string allTags(const std::vector<ArchiveImage>& images) {
  std::string out;
  for (const auto& image : images) {
    for (const auto& tag : image.repoTags) out += (out.empty() ? "" : ", ") + tag;
    if (image.repoTags.empty()) out += std::string(out.empty() ? "" : ", ") + "<untagged>";
  }
  return out.empty() ? "none" : out;
}

// The <name> of the tarball-directory rule (local.hpp).
Try<std::vector<std::string>> candidates(const std::string& dir, const messages::ImageReference& reference) {
  if (reference.repository().empty()) {
    return Error(ErrorKind::InvalidArgument, "Failed to find an archive: the image reference has no repository");
  }
  const auto ref = normalize(reference);
  std::string name = ref.repository();
  if (ref.registry() == kDockerHub && name.starts_with("library/")) name = name.substr(8);
  if (ref.registry() != kDockerHub && !ref.registry().empty()) name = ref.registry() + "/" + name;
  auto normal = local::normalizeRelative(name);
  if (normal.isError() || *normal != name) {
    return Error(ErrorKind::InvalidArgument,
                 "Failed to find an archive for '" + toString(ref) + "': its name is not a relative path");
  }
  std::vector<std::string> out;
  if (!ref.tag().empty()) out.push_back(dir + "/" + name + ":" + ref.tag() + ".tar");
  out.push_back(dir + "/" + name + ".tar");
  return out;
}

// Blocking: the first candidate that exists.
Try<std::string> findArchive(const std::string& dir, const messages::ImageReference& reference) {
  auto paths = candidates(dir, reference);
  if (paths.isError()) return paths.error();
  std::string tried;
  for (const auto& path : *paths) {
    if (local::isRegularFile(path)) return path;
    tried += (tried.empty() ? "'" : " nor '") + path + "'";
  }
  return Error(ErrorKind::NotFound, "Failed to find the archive of '" + toString(normalize(reference)) +
                                        "': " + (paths->size() > 1 ? "neither " : "") + tried + " exists");
}

class ArchiveResolver {
 public:
  ArchiveResolver(std::string file, messages::Image image, std::string what)
      : file_(std::move(file)), image_(std::move(image)), what_(std::move(what)) {}

  Try<messages::ResolvedImage> resolve() {
    auto index = local::indexArchive(file_, captureLimit, kMetadataBudget, what_);
    if (index.isError()) return index.error();
    index_ = std::move(*index);
    auto images = listImages();
    if (images.isError()) return images.error();
    auto chosen = select(*images);
    if (chosen.isError()) return chosen.error();
    const ArchiveImage& image = (*images)[*chosen];
    auto resolved = image.topId.empty() ? fromManifestJson(image) : fromLegacy(image);
    if (resolved.isError()) return resolved.error();
    fillReference(*resolved);
    const std::string& digest = image_.reference().digest();
    if (!digest.empty() && digest != resolved->manifest_digest() && digest != resolved->manifest().config().digest()) {
      return Error(ErrorKind::NotFound, what_ + ": the image in '" + file_ + "' is not '" + digest + "'");
    }
    return resolved;
  }

 private:
  // The captured content of a metadata file, through links.
  Try<std::string> captured(const std::string& name) const {
    auto entry = local::regularEntry(index_, name, what_);
    if (entry.isError()) return entry.error();
    auto it = index_.contents.find(*entry);
    if (it == index_.contents.end()) {
      return Error(ErrorKind::ResourceExhausted,
                   what_ + ": '" + name + "' was not read as metadata (the archive's metadata is over " +
                       std::to_string(kMetadataBudget) + " bytes, or it links to a file that is not metadata)");
    }
    return it->second;
  }

  Try<std::vector<ArchiveImage>> listImages() const {
    if (index_.entries.count("manifest.json")) {
      auto body = captured("manifest.json");
      if (body.isError()) return body.error();
      return local::parseManifestJson(*body, what_);
    }
    if (index_.entries.count("repositories")) {
      auto body = captured("repositories");
      if (body.isError()) return body.error();
      return local::parseRepositories(*body, what_);
    }
    return Error(ErrorKind::Corruption,
                 what_ + ": '" + file_ + "' has neither manifest.json nor repositories: not a docker save archive");
  }

  Try<std::size_t> select(const std::vector<ArchiveImage>& images) {
    const auto& wanted = image_.reference();
    if (images.empty()) return Error(ErrorKind::NotFound, what_ + ": '" + file_ + "' holds no image");
    if (!wanted.repository().empty() || !wanted.tag().empty()) {
      for (std::size_t i = 0; i < images.size(); ++i) {
        for (const auto& tag : images[i].repoTags) {
          if (matches(tag, wanted)) {
            repoTag_ = tag;
            return i;
          }
        }
      }
      if (images.size() == 1 && images[0].repoTags.empty()) return std::size_t{0};
      return Error(ErrorKind::NotFound, what_ + ": '" + file_ + "' has no image '" + toString(wanted) +
                                            "' (it has: " + allTags(images) + ")");
    }
    if (images.size() > 1) {
      return Error(ErrorKind::InvalidArgument, what_ + ": '" + file_ + "' holds " + std::to_string(images.size()) +
                                                   " images; name one (it has: " + allTags(images) + ")");
    }
    if (!images[0].repoTags.empty()) repoTag_ = images[0].repoTags[0];
    return std::size_t{0};
  }

  void fillReference(messages::ResolvedImage& resolved) const {
    messages::ImageReference ref;
    if (image_.type() == messages::Image::DOCKER) {
      ref = normalize(image_.reference());
    } else if (auto parsed = parseNormalized(repoTag_); !repoTag_.empty() && parsed.isSome()) {
      ref = *parsed;
    } else {
      ref.set_repository(file_);
    }
    *resolved.mutable_reference() = ref;
    resolved.set_endpoint("docker-archive:" + file_);
  }

  Try<messages::ResolvedImage> fromManifestJson(const ArchiveImage& image) {
    auto configEntry = local::regularEntry(index_, image.config, what_);
    if (configEntry.isError()) return configEntry.error();
    std::vector<std::string> layers;
    std::set<std::string> hash, read;
    for (const auto& layer : image.layers) {
      auto entry = local::regularEntry(index_, layer, what_);
      if (entry.isError()) return entry.error();
      layers.push_back(*entry);
      if (layerType(index_.entries.at(*entry).magic) != std::string(mediatype::kOciLayer)) hash.insert(*entry);
    }
    if (!index_.contents.count(*configEntry)) read.insert(*configEntry);
    local::Collected collected;
    if (!hash.empty() || !read.empty()) {
      auto c = local::collectEntries(file_, read, kMaxConfigBytes, hash, {}, what_);
      if (c.isError()) return c.error();
      collected = std::move(*c);
    }
    const std::string json = read.empty() ? index_.contents.at(*configEntry) : collected.contents.at(*configEntry);
    if (auto named = checkNamedDigest(*configEntry, json); named.isError()) return named.error();
    auto config = parseImageConfig(json);
    if (config.isError()) return config.error().withContext(what_ + ": '" + image.config + "'");
    if (config->diff_ids_size() != static_cast<int>(layers.size())) {
      return Error(ErrorKind::Corruption, what_ + ": manifest.json lists " + std::to_string(layers.size()) +
                                              " layers, the config's rootfs " +
                                              std::to_string(config->diff_ids_size()) + " diff_ids");
    }
    std::vector<std::string> digests;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      digests.push_back(hash.count(layers[i]) ? collected.digests.at(layers[i])
                                              : config->diff_ids(static_cast<int>(i)));
    }
    return build(json, layers, digests);
  }

  // A config named after its digest ("<hex>.json", "blobs/sha256/<hex>") must have it.
  Try<Nothing> checkNamedDigest(const std::string& entry, const std::string& json) const {
    std::string base = entry.substr(entry.rfind('/') + 1);
    if (base.ends_with(".json")) base.resize(base.size() - 5);
    const std::string named = "sha256:" + base;
    if (validateDigest(named).isError()) return Nothing{};
    if (auto verified = verifyDigest(json, named, "'" + entry + "'"); verified.isError()) {
      return verified.error().withContext(what_);
    }
    return Nothing{};
  }

  Try<messages::ResolvedImage> fromLegacy(const ArchiveImage& image) {
    // The "parent" chain, top first, then reversed: base first.
    std::vector<std::string> ids;
    std::string topJson;
    for (std::string id = image.topId; !id.empty();) {
      if (std::find(ids.begin(), ids.end(), id) != ids.end()) {
        return Error(ErrorKind::Corruption, what_ + ": the layers' parent chain loops at '" + id + "'");
      }
      if (ids.size() >= static_cast<std::size_t>(kMaxEntries)) {
        return Error(ErrorKind::Corruption, what_ + ": more than " + std::to_string(kMaxEntries) + " layers");
      }
      auto json = captured(id + "/json");
      if (json.isError()) return json.error();
      if (ids.empty()) topJson = *json;
      ids.push_back(id);
      auto parent = local::v1Parent(*json, id + "/json", what_);
      if (parent.isError()) return parent.error();
      id = *parent;
    }
    std::reverse(ids.begin(), ids.end());
    std::vector<std::string> layers;
    std::set<std::string> hash, decompress;
    for (const auto& id : ids) {
      auto entry = local::regularEntry(index_, id + "/layer.tar", what_);
      if (entry.isError()) return entry.error();
      layers.push_back(*entry);
      hash.insert(*entry);
      if (layerType(index_.entries.at(*entry).magic) != std::string(mediatype::kOciLayer)) decompress.insert(*entry);
    }
    auto collected = local::collectEntries(file_, {}, 0, hash, decompress, what_);
    if (collected.isError()) return collected.error();
    std::vector<std::string> digests, diffIds;
    for (const auto& layer : layers) {
      digests.push_back(collected->digests.at(layer));
      diffIds.push_back(decompress.count(layer) ? collected->diffIds.at(layer) : digests.back());
    }
    auto json = local::configFromV1(topJson, diffIds, what_);
    if (json.isError()) return json.error();
    return build(*json, layers, digests);
  }

  Try<messages::ResolvedImage> build(const std::string& configJson, const std::vector<std::string>& layers,
                                     const std::vector<std::string>& digests) const {
    auto config = parseImageConfig(configJson);
    if (config.isError()) return config.error().withContext(what_);
    messages::Descriptor configDescriptor;
    configDescriptor.set_media_type(mediatype::kOciConfig);
    configDescriptor.set_digest(sha256Digest(configJson));
    configDescriptor.set_size(static_cast<std::int64_t>(configJson.size()));
    std::vector<messages::Descriptor> descriptors;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const auto& entry = index_.entries.at(layers[i]);
      messages::Descriptor d;
      d.set_media_type(layerType(entry.magic));
      d.set_digest(digests[i]);
      d.set_size(entry.size);
      (*d.mutable_annotations())[kArchivePathAnnotation] = layers[i];
      descriptors.push_back(std::move(d));
    }
    const std::string manifestJson = local::synthesizeManifest(configDescriptor, descriptors);
    auto document = parseManifestDocument(manifestJson, mediatype::kOciManifest);
    if (document.isError()) return document.error().withContext(what_);
    messages::ResolvedImage resolved;
    resolved.set_manifest_digest(sha256Digest(manifestJson));
    *resolved.mutable_manifest() = std::get<messages::Manifest>(*document);
    *resolved.mutable_config() = std::move(*config);
    resolved.set_config_json(configJson);
    return resolved;
  }

  std::string file_;
  messages::Image image_;
  std::string what_;
  ArchiveIndex index_;
  std::string repoTag_;  // the one that picked the image, if any
};

std::string describe(const messages::Image& image) {
  if (image.type() == messages::Image::DOCKER_ARCHIVE) {
    const auto& ref = image.reference();
    const bool named = !ref.repository().empty() || !ref.tag().empty() || !ref.digest().empty();
    const std::string name = ref.repository().empty() ? ref.tag() + (ref.digest().empty() ? "" : "@" + ref.digest())
                                                      : toString(ref);
    return "docker-archive:" + local::trimSlashes(image.path()) + (named ? ":" + name : "");
  }
  return toString(normalize(image.reference()));
}

// The archive an image names: its path, or the rule for the tarball directory.
Try<std::function<Try<std::string>()>> archiveOf(const messages::Image& image, const std::string& tarballDir,
                                                 const char* verb) {
  if (image.type() == messages::Image::DOCKER_ARCHIVE && !image.path().empty()) {
    return std::function<Try<std::string>()>(
        [path = local::trimSlashes(image.path())] { return Try<std::string>(path); });
  }
  if (image.type() == messages::Image::DOCKER && !tarballDir.empty()) {
    if (auto names = candidates(tarballDir, image.reference()); names.isError()) return names.error();
    return std::function<Try<std::string>()>(
        [dir = tarballDir, ref = image.reference()] { return findArchive(dir, ref); });
  }
  return Error(ErrorKind::InvalidArgument,
               std::string("Failed to ") + verb + " '" + describe(image) +
                   "': the docker archive puller takes DOCKER_ARCHIVE images with a path, or DOCKER images when "
                   "created with a tarball directory");
}

}  // namespace

Try<std::unique_ptr<DockerArchivePuller>> DockerArchivePuller::create(actors::Runtime& runtime,
                                                                      std::string tarballDir) {
  return std::unique_ptr<DockerArchivePuller>(
      new DockerArchivePuller(runtime, local::trimSlashes(std::move(tarballDir))));
}

Future<messages::ResolvedImage> DockerArchivePuller::resolve(const messages::Image& image, const messages::Platform&) {
  auto archive = archiveOf(image, tarballDir_, "resolve");
  if (archive.isError()) return archive.error();
  const std::string what = "Failed to resolve '" + describe(image) + "'";
  return actors::async(runtime_, [find = *archive, image, what]() -> Try<messages::ResolvedImage> {
    auto file = find();
    if (file.isError()) return file.error();
    return ArchiveResolver(*file, image, what).resolve();
  });
}

Future<Nothing> DockerArchivePuller::fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                               const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink,
                                               std::shared_ptr<BlobSources> sources) {
  if (auto one = local::oneSource(sources, blob); one.isError()) return one.error();
  auto archive = archiveOf(image, tarballDir_, "fetch");
  if (archive.isError()) return archive.error();
  const std::string what = "Failed to fetch the blob '" + blob.digest() + "' of '" + describe(image) + "'";
  if (auto valid = validateDigest(blob.digest()); valid.isError()) return valid.error().withContext(what);
  if (blob.digest() == resolved.manifest().config().digest() && !resolved.config_json().empty()) {
    return local::streamBlob(
        runtime_,
        [json = resolved.config_json()]() -> Try<std::unique_ptr<local::ChunkSource>> {
          return local::fromBytes(json);
        },
        blob, std::move(sink), what);
  }
  std::string entry;
  if (auto it = blob.annotations().find(kArchivePathAnnotation); it != blob.annotations().end()) entry = it->second;
  for (const auto& layer : resolved.manifest().layers()) {
    if (!entry.empty()) break;
    auto it = layer.annotations().find(kArchivePathAnnotation);
    if (layer.digest() == blob.digest() && it != layer.annotations().end()) entry = it->second;
  }
  if (entry.empty()) return Error(ErrorKind::NotFound, what + ": it is not a layer of the resolved image");
  if (auto normal = local::normalizeRelative(entry); normal.isError() || *normal != entry) {
    return Error(ErrorKind::InvalidArgument,
                 what + ": the archive path '" + entry + "' is not a normalised relative path");
  }
  return local::streamBlob(
      runtime_,
      [find = *archive, entry, what]() -> Try<std::unique_ptr<local::ChunkSource>> {
        auto file = find();
        if (file.isError()) return file.error();
        return local::openEntry(*file, entry, what);
      },
      blob, std::move(sink), what);
}

}  // namespace prov::fetcher
