#include "testkit/image_builder.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include "fetcher/digest.hpp"
#include "testkit/files.hpp"

namespace prov::testing {

namespace fs = std::filesystem;

TarEntry TarEntry::file(std::string path, std::string content, unsigned mode) {
  TarEntry e;
  e.path = std::move(path);
  e.content = std::move(content);
  e.mode = mode;
  return e;
}

TarEntry TarEntry::directory(std::string path, unsigned mode) {
  TarEntry e;
  e.path = std::move(path);
  e.type = Type::Directory;
  e.mode = mode;
  return e;
}

TarEntry TarEntry::symlink(std::string path, std::string target) {
  TarEntry e;
  e.path = std::move(path);
  e.type = Type::Symlink;
  e.content = std::move(target);
  e.mode = 0777;
  return e;
}

namespace {

la_ssize_t appendTo(struct archive*, void* out, const void* data, size_t size) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(data), size);
  return static_cast<la_ssize_t>(size);
}

void check(int rc, struct archive* a, const char* what) {
  if (rc < ARCHIVE_WARN) throw std::runtime_error(std::string(what) + ": " + archive_error_string(a));
}

std::string jsonArray(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ",\"" : "\"") + items[i] + "\"";
  return out + "]";
}

std::string descriptor(const char* mediaType, const std::string& digest, std::size_t size,
                       const std::string& extra = "") {
  return std::string("{\"mediaType\":\"") + mediaType + "\",\"digest\":\"" + digest +
         "\",\"size\":" + std::to_string(size) + extra + "}";
}

}  // namespace

namespace {

// A writer into `out`: a pax tar, or the raw bytes of one entry; compressed
// as asked, with no padding after the end.
struct archive* openWriter(std::string& out, bool raw, TarCompression compression) {
  struct archive* a = archive_write_new();
  check(raw ? archive_write_set_format_raw(a) : archive_write_set_format_pax_restricted(a), a, "format");
  if (compression == TarCompression::Gzip) {
    check(archive_write_add_filter_gzip(a), a, "gzip");
    // No time in the gzip header: one tree compresses to one blob, as the
    // images built on one base share its blob in a registry.
    check(archive_write_set_filter_option(a, "gzip", "timestamp", nullptr), a, "gzip without a timestamp");
  }
  if (compression == TarCompression::Zstd) check(archive_write_add_filter_zstd(a), a, "zstd");
  if (compression == TarCompression::Xz) check(archive_write_add_filter_xz(a), a, "xz");
  if (compression == TarCompression::Bzip2) check(archive_write_add_filter_bzip2(a), a, "bzip2");
  archive_write_set_bytes_in_last_block(a, 1);
  check(archive_write_open2(a, &out, nullptr, appendTo, nullptr, nullptr), a, "open");
  return a;
}

}  // namespace

std::string makeTar(const std::vector<TarEntry>& entries, TarCompression compression) {
  std::string out;
  struct archive* a = openWriter(out, false, compression);
  for (const auto& e : entries) {
    struct archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.path.c_str());
    archive_entry_set_uid(entry, e.uid);
    archive_entry_set_gid(entry, e.gid);
    archive_entry_set_mtime(entry, e.mtime, 0);
    switch (e.type) {
      case TarEntry::Type::File:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_size(entry, static_cast<la_int64_t>(e.content.size()));
        break;
      case TarEntry::Type::Directory: archive_entry_set_filetype(entry, AE_IFDIR); break;
      case TarEntry::Type::Symlink:
        archive_entry_set_filetype(entry, AE_IFLNK);
        archive_entry_set_symlink(entry, e.content.c_str());
        break;
      case TarEntry::Type::Hardlink: archive_entry_set_hardlink(entry, e.content.c_str()); break;
      case TarEntry::Type::CharDevice:
        archive_entry_set_filetype(entry, AE_IFCHR);
        archive_entry_set_rdevmajor(entry, e.major);
        archive_entry_set_rdevminor(entry, e.minor);
        break;
      case TarEntry::Type::Fifo: archive_entry_set_filetype(entry, AE_IFIFO); break;
    }
    archive_entry_set_perm(entry, e.mode);
    for (const auto& [name, value] : e.xattrs) {
      archive_entry_xattr_add_entry(entry, name.c_str(), value.data(), value.size());
    }
    for (const auto& [offset, length] : e.dataRegions) archive_entry_sparse_add_entry(entry, offset, length);
    check(archive_write_header(a, entry), a, "header");
    // For a sparse file libarchive takes the whole content and drops the holes.
    if (e.type == TarEntry::Type::File && !e.content.empty()) {
      if (archive_write_data(a, e.content.data(), e.content.size()) < 0) check(ARCHIVE_FATAL, a, "data");
    }
    archive_entry_free(entry);
  }
  check(archive_write_close(a), a, "close");
  archive_write_free(a);
  return out;
}

std::string makeTarPrefix(const std::vector<TarEntry>& entries, TarCompression compression) {
  std::string tar = makeTar(entries, TarCompression::None);
  tar.resize(tar.size() - 1024);
  if (compression == TarCompression::None) return tar;
  std::string out;
  struct archive* a = openWriter(out, true, compression);
  struct archive_entry* entry = archive_entry_new();
  archive_entry_set_filetype(entry, AE_IFREG);
  archive_entry_set_size(entry, static_cast<la_int64_t>(tar.size()));
  check(archive_write_header(a, entry), a, "header");
  if (archive_write_data(a, tar.data(), tar.size()) < 0) check(ARCHIVE_FATAL, a, "data");
  archive_entry_free(entry);
  check(archive_write_close(a), a, "close");
  archive_write_free(a);
  return out;
}

OciLayout::OciLayout(fs::path dir) : dir_(std::move(dir)) {
  fs::create_directories(dir_ / "blobs" / "sha256");
  std::ofstream(dir_ / "oci-layout") << R"({"imageLayoutVersion":"1.0.0"})";
}

std::string OciLayout::writeBlob(const std::string& content) {
  const std::string digest = fetcher::sha256Digest(content);
  std::ofstream out(dir_ / "blobs" / "sha256" / digest.substr(7), std::ios::binary);
  out << content;
  return digest;
}

BuiltImage OciLayout::addImage(const ImageSpec& spec) {
  BuiltImage image;
  const char* layerType = spec.compression == TarCompression::Gzip   ? "application/vnd.oci.image.layer.v1.tar+gzip"
                          : spec.compression == TarCompression::Zstd ? "application/vnd.oci.image.layer.v1.tar+zstd"
                                                                     : "application/vnd.oci.image.layer.v1.tar";
  std::string layers;
  for (const auto& entries : spec.layers) {
    const std::string blob = makeTar(entries, spec.compression);
    image.diffIds.push_back(fetcher::sha256Digest(makeTar(entries, TarCompression::None)));
    image.layerDigests.push_back(writeBlob(blob));
    image.layerBlobs.push_back(blob);
    layers += (layers.empty() ? "" : ",") + descriptor(layerType, image.layerDigests.back(), blob.size());
  }
  std::string config = "{\"architecture\":\"" + spec.architecture + "\",\"os\":\"linux\"";
  if (!spec.variant.empty()) config += ",\"variant\":\"" + spec.variant + "\"";
  config += ",\"config\":{\"Env\":" + jsonArray(spec.env) + ",\"Cmd\":" + jsonArray(spec.cmd);
  if (!spec.entrypoint.empty()) config += ",\"Entrypoint\":" + jsonArray(spec.entrypoint);
  config += ",\"WorkingDir\":\"" + spec.workingDir + "\",\"User\":\"" + spec.user + "\"}";
  if (spec.history) {
    config += ",\"history\":[";
    for (std::size_t i = 0; i < spec.layers.size(); ++i) {
      config += std::string(i ? "," : "") + "{\"created\":\"2026-01-01T00:00:00Z\",\"created_by\":\"layer " +
                std::to_string(i) + "\"}";
    }
    config += "]";
  }
  config += ",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":" + jsonArray(image.diffIds) + "}}";
  image.configJson = config;
  image.configDigest = writeBlob(config);
  image.manifestJson = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":" +
                       descriptor("application/vnd.oci.image.config.v1+json", image.configDigest, config.size()) +
                       ",\"layers\":[" + layers + "]}";
  image.manifestDigest = writeBlob(image.manifestJson);
  return image;
}

void OciLayout::writeIndexJson(const std::string& mediaType, const std::string& digest, std::size_t size,
                               const std::string& tag) {
  std::ofstream(dir_ / "index.json")
      << "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":["
      << descriptor(mediaType.c_str(), digest, size,
                    ",\"annotations\":{\"org.opencontainers.image.ref.name\":\"" + tag + "\"}")
      << "]}";
}

void OciLayout::tag(const BuiltImage& image, const std::string& tag) {
  writeIndexJson("application/vnd.oci.image.manifest.v1+json", image.manifestDigest, image.manifestJson.size(), tag);
}

std::string OciLayout::tagIndex(const std::vector<std::pair<BuiltImage, ImageSpec>>& images, const std::string& tag) {
  std::string manifests;
  for (const auto& [image, spec] : images) {
    std::string platform = ",\"platform\":{\"os\":\"linux\",\"architecture\":\"" + spec.architecture + "\"";
    if (!spec.variant.empty()) platform += ",\"variant\":\"" + spec.variant + "\"";
    platform += "}";
    manifests += (manifests.empty() ? "" : ",") + descriptor("application/vnd.oci.image.manifest.v1+json",
                                                             image.manifestDigest, image.manifestJson.size(), platform);
  }
  const std::string index =
      "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[" + manifests +
      "]}";
  const std::string digest = writeBlob(index);
  writeIndexJson("application/vnd.oci.image.index.v1+json", digest, index.size(), tag);
  return digest;
}

void writeLegacyDockerSave(const fs::path& file, const std::string& repositories,
                           const std::vector<LegacyLayer>& layers) {
  std::vector<TarEntry> entries = {TarEntry::directory("./"), TarEntry::file("./repositories", repositories)};
  for (const auto& layer : layers) {
    entries.push_back(TarEntry::directory("./" + layer.id + "/"));
    entries.push_back(TarEntry::file("./" + layer.id + "/VERSION", "1.0"));
    entries.push_back(TarEntry::file("./" + layer.id + "/json", layer.json));
    entries.push_back(TarEntry::file("./" + layer.id + "/layer.tar", layer.tar));
  }
  const std::string tar = makeTar(entries, TarCompression::None);
  std::ofstream out(file, std::ios::binary);
  out << tar;
  if (!out.flush()) throw std::runtime_error("Failed to write '" + file.string() + "'");
}

void removeTarEntries(const fs::path& file, const std::vector<std::string>& names) {
  std::string out;
  struct archive* in = archive_read_new();
  archive_read_support_format_tar(in);
  check(archive_read_open_filename(in, file.c_str(), 1 << 16), in, "open for reading");
  struct archive* a = archive_write_new();
  check(archive_write_set_format_pax_restricted(a), a, "format");
  archive_write_set_bytes_in_last_block(a, 1);
  check(archive_write_open2(a, &out, nullptr, appendTo, nullptr, nullptr), a, "open");
  struct archive_entry* entry = nullptr;
  std::string buffer(1 << 16, '\0');
  while (archive_read_next_header(in, &entry) == ARCHIVE_OK) {
    const std::string name = archive_entry_pathname(entry);
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;
    check(archive_write_header(a, entry), a, "header");
    la_ssize_t n;
    while ((n = archive_read_data(in, buffer.data(), buffer.size())) > 0) archive_write_data(a, buffer.data(), n);
    check(static_cast<int>(n), in, "data");
  }
  check(archive_write_close(a), a, "close");
  archive_write_free(a);
  archive_read_free(in);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << out;
}

std::string SavedImage::manifestItem() const {
  std::string tags, layers;
  for (const auto& t : repoTags) tags += (tags.empty() ? "\"" : ",\"") + t + "\"";
  for (const auto& l : layerNames) layers += (layers.empty() ? "\"" : ",\"") + l + "\"";
  return "{\"Config\":\"" + configName + "\",\"RepoTags\":[" + tags + "],\"Layers\":[" + layers + "]}";
}

std::vector<TarEntry> SavedImage::entries() const {
  std::vector<TarEntry> out = {TarEntry::file(configName, configJson)};
  for (std::size_t i = 0; i < layerNames.size(); ++i) out.push_back(TarEntry::file(layerNames[i], layerBlobs[i]));
  return out;
}

SavedImage savedImage(std::vector<std::string> repoTags, const std::string& marker,
                      const std::vector<TarCompression>& compressions) {
  SavedImage image;
  image.repoTags = std::move(repoTags);
  std::string diffIds;
  for (std::size_t i = 0; i < compressions.size(); ++i) {
    const std::vector<TarEntry> files = {TarEntry::file("layer" + std::to_string(i), marker + std::to_string(i))};
    image.layerBlobs.push_back(makeTar(files, compressions[i]));
    image.diffIds.push_back(fetcher::sha256Digest(makeTar(files, TarCompression::None)));
    image.layerNames.push_back(fetcher::sha256Digest(image.layerBlobs.back()).substr(7) + "/layer.tar");
    diffIds += (diffIds.empty() ? "\"" : ",\"") + image.diffIds.back() + "\"";
  }
  image.configJson = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"MARKER=" + marker +
                     "\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[" + diffIds + "]}}";
  image.configName = fetcher::sha256Digest(image.configJson).substr(7) + ".json";
  return image;
}

void writeSave(const std::filesystem::path& file, const std::vector<SavedImage>& images, std::string manifest,
               std::vector<TarEntry> extra, TarCompression compression) {
  std::vector<TarEntry> entries;
  for (const auto& image : images) {
    for (auto& e : image.entries()) entries.push_back(std::move(e));
  }
  if (manifest.empty()) {
    for (const auto& image : images) manifest += (manifest.empty() ? "[" : ",") + image.manifestItem();
    manifest += "]";
  }
  for (auto& e : extra) entries.push_back(std::move(e));
  entries.push_back(TarEntry::file("manifest.json", manifest));
  writeFile(file, makeTar(entries, compression));
}

}  // namespace prov::testing
