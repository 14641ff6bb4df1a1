#pragma once

// Test images written from scratch: layer tarballs made with libarchive and
// OCI image layouts (oci-layout, index.json, blobs/sha256/...) that skopeo
// can push to a registry and the local-source pullers can read.

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace prov::testing {

struct TarEntry {
  enum class Type { File, Directory, Symlink, Hardlink, CharDevice, Fifo };
  std::string path;
  Type type = Type::File;
  std::string content;  // file data, or the link target
  unsigned mode = 0644;
  unsigned uid = 0, gid = 0;
  unsigned major = 0, minor = 0;
  std::int64_t mtime = 1700000000;
  std::vector<std::pair<std::string, std::string>> xattrs;  // written as SCHILY.xattr
  // A sparse file: the data regions (offset, length) of `content`; the rest
  // of `content` is a hole (zeros) and is not written to the tar.
  std::vector<std::pair<std::int64_t, std::int64_t>> dataRegions;

  static TarEntry file(std::string path, std::string content, unsigned mode = 0644);
  static TarEntry directory(std::string path, unsigned mode = 0755);
  static TarEntry symlink(std::string path, std::string target);
};

enum class TarCompression { None, Gzip, Zstd, Xz, Bzip2 };

// A pax tar of `entries`, in order, compressed as asked.
std::string makeTar(const std::vector<TarEntry>& entries, TarCompression compression = TarCompression::Gzip);
// The entries of such a tar without its end (the two zero blocks): a valid
// prefix of a longer tar, then compressed as asked (one whole gzip member or
// zstd frame, which a decompressor continues past).
std::string makeTarPrefix(const std::vector<TarEntry>& entries, TarCompression compression);

struct BuiltImage {
  std::string manifestDigest;
  std::string manifestJson;
  std::string configDigest;
  std::string configJson;
  std::vector<std::string> layerDigests;  // compressed blobs, base first
  std::vector<std::string> diffIds;       // uncompressed tars, base first
  std::vector<std::string> layerBlobs;
};

struct ImageSpec {
  std::vector<std::vector<TarEntry>> layers;  // base first
  std::string architecture = "amd64";
  std::string variant;
  std::vector<std::string> env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd = {"/bin/sh"};
  std::string workingDir = "/";
  std::string user;
  TarCompression compression = TarCompression::Gzip;
  bool history = false;  // a history entry per layer (skopeo needs them to convert to schema 1)
};

// An OCI image layout at `dir` (created if missing), with its blobs.
class OciLayout {
 public:
  explicit OciLayout(std::filesystem::path dir);

  std::string writeBlob(const std::string& content);  // -> "sha256:<hex>"
  BuiltImage addImage(const ImageSpec& spec);
  // index.json listing one image under `tag`.
  void tag(const BuiltImage& image, const std::string& tag);
  // index.json listing, under `tag`, an image index of these images, each
  // with its platform. Returns the nested index's digest.
  std::string tagIndex(const std::vector<std::pair<BuiltImage, ImageSpec>>& images, const std::string& tag);

  const std::filesystem::path& dir() const { return dir_; }

 private:
  void writeIndexJson(const std::string& mediaType, const std::string& digest, std::size_t size,
                      const std::string& tag);
  std::filesystem::path dir_;
};

// One layer of a legacy `docker save` archive.
struct LegacyLayer {
  std::string id;    // its directory name
  std::string json;  // `<id>/json`, the layer's v1 json ({"parent": ...})
  std::string tar;   // `<id>/layer.tar`
};

// A `docker save` archive in the legacy layout Mesos's ImageTarPuller reads
// (no manifest.json), named the way `tar -c -C dir .` names it ("./..."):
// `repositories` (e.g. {"abc":{"latest":"456"}}), then per layer `<id>/`,
// `<id>/VERSION`, `<id>/json` and `<id>/layer.tar`. Uncompressed.
void writeLegacyDockerSave(const std::filesystem::path& file, const std::string& repositories,
                           const std::vector<LegacyLayer>& layers);

// An image for a hand-written docker-save archive: `<hex>.json` config and
// `<hex>/layer.tar` layers (compressed as asked), with its manifest.json item.
struct SavedImage {
  std::vector<std::string> repoTags;
  std::string configJson;
  std::string configName;
  std::vector<std::string> layerBlobs;  // as stored
  std::vector<std::string> layerNames;
  std::vector<std::string> diffIds;

  std::string manifestItem() const;
  std::vector<TarEntry> entries() const;
};

// One file "layer<i>" holding `marker` + i per layer, a layer per
// compression; its config says Env MARKER=`marker`.
SavedImage savedImage(std::vector<std::string> repoTags, const std::string& marker,
                      const std::vector<TarCompression>& compressions);

// A `docker save` archive of `images` (its manifest.json written from them
// unless given), with `extra` entries.
void writeSave(const std::filesystem::path& file, const std::vector<SavedImage>& images, std::string manifest = "",
               std::vector<TarEntry> extra = {}, TarCompression compression = TarCompression::None);

// Rewrites the tar `file` without the entries named `names` (GNU tar's
// --delete mangles skopeo's archives).
void removeTarEntries(const std::filesystem::path& file, const std::vector<std::string>& names);

}  // namespace prov::testing
