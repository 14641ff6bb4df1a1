// OciLayoutPuller: an OCI image layout directory (local.hpp).
//
//   DIR/oci-layout                  {"imageLayoutVersion": "1.0.0"}
//   DIR/index.json                  an image index; entries named by ref.name
//   DIR/blobs/<alg>/<hex>           manifests, indexes, configs, layers

#include <rapidjson/document.h>

#include "actors/async.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/local/local.hpp"
#include "fetcher/local/util.hpp"
#include "fetcher/manifest.hpp"

namespace prov::fetcher {

using actors::Future;

namespace {

constexpr const char* kRefName = "org.opencontainers.image.ref.name";

bool isIndexType(const std::string& t) { return t == mediatype::kOciIndex || t == mediatype::kDockerList; }
bool isDocumentType(const std::string& t) {
  return isIndexType(t) || t == mediatype::kOciManifest || t == mediatype::kDockerSchema2 ||
         t == mediatype::kDockerSchema1 || t == mediatype::kDockerSchema1Signed;
}

// DIR/blobs/<alg>/<hex> of a validated digest.
std::string blobPath(const std::string& dir, const std::string& digest) {
  const auto colon = digest.find(':');
  return dir + "/blobs/" + digest.substr(0, colon) + "/" + digest.substr(colon + 1);
}

class LayoutReader {
 public:
  LayoutReader(std::string dir, std::string tag, std::string what)
      : dir_(std::move(dir)), tag_(std::move(tag)), what_(std::move(what)) {}

  Try<messages::ResolvedImage> resolve(const messages::Platform& platform) {
    auto isDir = local::isDirectory(dir_, what_);
    if (isDir.isError()) return isDir.error();
    if (!*isDir) return Error(ErrorKind::InvalidArgument, what_ + ": '" + dir_ + "' is not a directory");
    if (auto layout = checkLayoutFile(); layout.isError()) return layout.error();

    const std::string indexFile = dir_ + "/index.json";
    auto body = local::readFile(indexFile, kMaxManifestBytes, what_);
    if (body.isError()) return body.error();
    auto document = parseManifestDocument(*body, "");
    if (document.isError()) return document.error().withContext(what_ + ": '" + indexFile + "'");
    if (!std::holds_alternative<messages::Index>(*document)) {
      return Error(ErrorKind::Corruption, what_ + ": '" + indexFile + "' is not an image index");
    }
    auto entry = pickEntry(std::get<messages::Index>(*document), indexFile, platform);
    if (entry.isError()) return entry.error();
    return resolveEntry(*entry, platform);
  }

 private:
  Try<Nothing> checkLayoutFile() const {
    const std::string file = dir_ + "/oci-layout";
    auto body = local::readFile(file, 4096, what_);
    if (body.isError()) {
      if (body.error().kind != ErrorKind::NotFound) return body.error();
      return Error(ErrorKind::InvalidArgument,
                   what_ + ": '" + dir_ + "' is not an OCI image layout (no oci-layout file)");
    }
    rapidjson::Document doc;
    doc.Parse(body->data(), body->size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("imageLayoutVersion") ||
        !doc["imageLayoutVersion"].IsString()) {
      return Error(ErrorKind::Corruption, what_ + ": '" + file + "' has no imageLayoutVersion");
    }
    return Nothing{};
  }

  static std::string nameOf(const messages::Descriptor& d) {
    auto it = d.annotations().find(kRefName);
    return it == d.annotations().end() ? "<untagged " + d.digest() + ">" : it->second;
  }

  // The index.json entry the tag names.
  Try<messages::Descriptor> pickEntry(const messages::Index& index, const std::string& indexFile,
                                      const messages::Platform& platform) const {
    std::string names;
    for (const auto& d : index.manifests()) names += (names.empty() ? "" : ", ") + nameOf(d);
    if (tag_.empty()) {
      if (index.manifests_size() == 1) return index.manifests(0);
      if (index.manifests_size() == 0)
        return Error(ErrorKind::NotFound, what_ + ": '" + indexFile + "' lists no image");
      return Error(ErrorKind::InvalidArgument, what_ + ": '" + indexFile + "' lists " +
                                                   std::to_string(index.manifests_size()) +
                                                   " images; name one with a tag (it has: " + names + ")");
    }
    messages::Index tagged;
    for (const auto& d : index.manifests()) {
      auto it = d.annotations().find(kRefName);
      if (it != d.annotations().end() && it->second == tag_) *tagged.add_manifests() = d;
    }
    if (tagged.manifests_size() == 0) {
      return Error(ErrorKind::NotFound, what_ + ": no image tagged '" + tag_ + "' in '" + indexFile +
                                            "' (it has: " + (names.empty() ? "none" : names) + ")");
    }
    if (tagged.manifests_size() == 1) return tagged.manifests(0);
    // One tag on several platforms' manifests.
    auto chosen = selectManifest(tagged, platform);
    if (chosen.isError()) return chosen.error().withContext(what_);
    return chosen;
  }

  // The blob `d` names, checked against its size and digest.
  Try<std::string> readBlob(const messages::Descriptor& d, std::size_t limit) const {
    if (auto valid = validateDigest(d.digest()); valid.isError()) return valid.error().withContext(what_);
    const std::string path = blobPath(dir_, d.digest());
    auto body = local::readFile(path, limit, what_);
    if (body.isError()) return body.error();
    if (d.size() >= 0 && body->size() != static_cast<std::size_t>(d.size())) {
      return Error(ErrorKind::DigestMismatch, what_ + ": '" + path + "' is " + std::to_string(body->size()) +
                                                  " bytes, its descriptor says " + std::to_string(d.size()));
    }
    if (auto verified = verifyDigest(*body, d.digest(), "'" + path + "'"); verified.isError()) {
      return verified.error().withContext(what_);
    }
    return body;
  }

  Try<Document> readDocument(const messages::Descriptor& d) const {
    if (!isDocumentType(d.media_type())) {
      return Error(ErrorKind::Unsupported, what_ + ": media type '" + d.media_type() + "' of '" + d.digest() +
                                               "' is not an image manifest or index");
    }
    auto body = readBlob(d, kMaxManifestBytes);
    if (body.isError()) return body.error();
    auto document = parseManifestDocument(*body, d.media_type());
    if (document.isError()) return document.error().withContext(what_ + ": '" + blobPath(dir_, d.digest()) + "'");
    return document;
  }

  Try<messages::ResolvedImage> resolveEntry(messages::Descriptor entry, const messages::Platform& platform) const {
    messages::ResolvedImage resolved;
    resolved.mutable_reference()->set_repository(dir_);
    std::string tag = tag_;
    if (auto it = entry.annotations().find(kRefName); tag.empty() && it != entry.annotations().end()) tag = it->second;
    resolved.mutable_reference()->set_tag(tag);
    resolved.set_endpoint("oci:" + dir_);
    auto document = readDocument(entry);
    if (document.isError()) return document.error();
    if (std::holds_alternative<messages::Index>(*document)) {
      auto chosen = selectManifest(std::get<messages::Index>(*document), platform);
      if (chosen.isError()) return chosen.error().withContext(what_);
      resolved.set_index_digest(entry.digest());
      entry = *chosen;
      document = readDocument(entry);
      if (document.isError()) return document.error();
      if (!std::holds_alternative<messages::Manifest>(*document)) {
        return Error(ErrorKind::Corruption,
                     what_ + ": the index '" + resolved.index_digest() + "' points at another index");
      }
    }
    resolved.set_manifest_digest(entry.digest());
    *resolved.mutable_manifest() = std::get<messages::Manifest>(*document);
    if (auto config = readConfig(resolved); config.isError()) return config.error();
    return resolved;
  }

  Try<Nothing> readConfig(messages::ResolvedImage& resolved) const {
    const auto& manifest = resolved.manifest();
    if (manifest.kind() == messages::Manifest::DOCKER_SCHEMA1) {
      auto config = schema1Config(manifest);
      if (config.isError()) return config.error().withContext(what_);
      *resolved.mutable_config() = std::move(*config);
      return Nothing{};
    }
    auto json = readBlob(manifest.config(), kMaxConfigBytes);
    if (json.isError()) return json.error();
    auto config = parseImageConfig(*json);
    if (config.isError()) {
      return config.error().withContext(what_ + ": '" + blobPath(dir_, manifest.config().digest()) + "'");
    }
    if (config->diff_ids_size() != manifest.layers_size()) {
      return Error(ErrorKind::Corruption, what_ + ": the manifest has " + std::to_string(manifest.layers_size()) +
                                              " layers, the config's rootfs " +
                                              std::to_string(config->diff_ids_size()) + " diff_ids");
    }
    *resolved.mutable_config() = std::move(*config);
    resolved.set_config_json(std::move(*json));
    return Nothing{};
  }

  std::string dir_;
  std::string tag_;
  std::string what_;
};

Try<std::string> layoutDir(const messages::Image& image, const char* verb) {
  if (image.type() != messages::Image::OCI_LAYOUT || image.path().empty()) {
    return Error(ErrorKind::InvalidArgument,
                 std::string("Failed to ") + verb +
                     " an image: the OCI layout puller needs an OCI_LAYOUT image with a path");
  }
  return local::trimSlashes(image.path());
}

}  // namespace

Try<std::unique_ptr<OciLayoutPuller>> OciLayoutPuller::create(actors::Runtime& runtime) {
  return std::unique_ptr<OciLayoutPuller>(new OciLayoutPuller(runtime));
}

Future<messages::ResolvedImage> OciLayoutPuller::resolve(const messages::Image& image,
                                                         const messages::Platform& platform) {
  auto dir = layoutDir(image, "resolve");
  if (dir.isError()) return dir.error();
  const std::string tag = image.layout_tag();
  const std::string what = "Failed to resolve 'oci:" + *dir + (tag.empty() ? "" : ":" + tag) + "'";
  return actors::async(
      runtime_, [reader = LayoutReader(*dir, tag, what), platform]() mutable { return reader.resolve(platform); });
}

Future<Nothing> OciLayoutPuller::fetchBlob(const messages::Image& image, const messages::ResolvedImage&,
                                           const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink,
                                           std::shared_ptr<BlobSources> sources) {
  if (auto one = local::oneSource(sources, blob); one.isError()) return one.error();
  auto dir = layoutDir(image, "fetch");
  if (dir.isError()) return dir.error();
  const std::string what = "Failed to fetch the blob '" + blob.digest() + "' from 'oci:" + *dir + "'";
  if (auto valid = validateDigest(blob.digest()); valid.isError()) return valid.error().withContext(what);
  const std::string path = blobPath(*dir, blob.digest());
  return local::streamBlob(
      runtime_, [path, what] { return local::openFile(path, what); }, blob, std::move(sink), what);
}

}  // namespace prov::fetcher
