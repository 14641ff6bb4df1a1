#pragma once

// Local image sources: the Puller role (puller.hpp) over files on this
// machine instead of a registry.
//
// OciLayoutPuller reads an OCI image layout directory
// (`Image{type: OCI_LAYOUT, path: DIR, layout_tag: TAG}`, skopeo's `oci:DIR:TAG`):
//   DIR/oci-layout must exist; DIR/index.json lists the images, each named by
//   its `org.opencontainers.image.ref.name` annotation. TAG picks the entries
//   with that name (several entries with platforms: the one for the platform
//   asked for); an empty TAG needs an index.json with exactly one entry. An
//   entry may be a manifest or an image index (the platform's manifest is
//   chosen with selectManifest). Every document read is verified: the file
//   DIR/blobs/<alg>/<hex> must have the size and the digest of the descriptor
//   that named it. Blob paths come only from validated digests, so nothing
//   outside DIR is read because of what index.json or a manifest says.
//   ResolvedImage: reference {repository: DIR as given, tag: the ref.name
//   used}, endpoint "oci:DIR", manifest_digest / index_digest as in the
//   layout, config_json the config blob.
//
// DockerArchivePuller reads `docker save` archives without unpacking them
// (libarchive, entries found by scanning; the archive may itself be
// compressed with gzip, zstd, xz or bzip2):
//   - `Image{type: DOCKER_ARCHIVE, path: FILE, reference: R}` (skopeo's
//     `docker-archive:FILE[:R]`): R (optional) picks an image by its
//     RepoTags; R with only a tag matches any repository with that tag.
//     Without R the archive must hold one image, else InvalidArgument
//     listing its RepoTags. R's digest, if any, must be the image's config
//     digest (Docker's image id) or its manifest_digest (below), else
//     NotFound. The platform is not looked at: an archive holds one image
//     per name.
//   - `Image{type: DOCKER, reference: R}` when created with `tarballDir`
//     (Mesos's `--docker_registry=/path`): the archive is
//       <tarballDir>/<name>:<tag>.tar  when it exists, else
//       <tarballDir>/<name>.tar
//     where <name> is R's repository with docker.io's "library/" dropped and
//     any registry other than docker.io put in front ("alpine",
//     "foo/bar", "registry:5000/foo/bar": a '/' is a subdirectory). So
//     `alpine` and `alpine:latest` both find alpine.tar, as in Mesos. Missing:
//     NotFound naming the paths tried. In the archive, R (normalised) must be
//     one of the RepoTags (or a `repositories` entry), except that an archive
//     of one untagged image is taken as it is.
//   Both layouts are understood: `manifest.json` ([{Config, RepoTags,
//   Layers}], preferred when present) and the legacy one Mesos reads
//   (`repositories` {repo: {tag: id}} with `<id>/json` and `<id>/layer.tar`,
//   layers found through the json "parent" chain). Symbolic and hard links
//   between entries (docker and skopeo write `<id>/layer.tar -> ../x.tar`)
//   are followed inside the archive only. Entry paths from manifest.json must
//   be relative and free of "..".
//   The image is described as an OCI image: the puller synthesizes an OCI
//   manifest (config + layers) and reports its sha256 as manifest_digest
//   (stable for the same archive content). Layers are usually uncompressed
//   tar (media type application/vnd.oci.image.layer.v1.tar, digest = diffID
//   from the config); a layer entry starting with gzip or zstd magic gets the
//   +gzip / +zstd type and its own digest, hashed at resolve time. The config
//   is the archive's config file (its name "<hex>.json" is checked against
//   its sha256); a legacy archive has none, so the top layer's v1 json
//   becomes one (Docker's v1 -> v2 conversion: id/parent dropped, rootfs
//   diff_ids added, each the sha256 of a layer.tar, after decompression when
//   compressed), and config_json holds those synthesized bytes. Each layer
//   descriptor carries the annotation kArchivePathAnnotation naming its entry.
//   ResolvedImage: reference = the RepoTag used (normalised; DOCKER: the
//   reference asked for), or {repository: FILE} for an untagged image;
//   endpoint "docker-archive:FILE".
//
// fetchBlob streams a layer (or the config) into the sink in chunks of 1 MiB,
// waiting for each write before reading on, hashing as it goes; READY only
// when the size and digest matched, DigestMismatch otherwise (the sink then
// holds garbage). A discard stops it at the next chunk. A local blob has one
// source, read once from its start: nothing to fall through to or splice.
//
// Threads: every file access runs on the runtime's blocking pool
// (actors::async); nothing blocks the caller or a strand. Both pullers are
// stateless and thread-safe; calls in flight hold only the runtime, so a
// puller may be destroyed before they finish. No exception escapes.
//
// Errors, each "Failed to <verb> '<thing>': <cause>": NotFound (missing
// directory, file, blob or tag), InvalidArgument (wrong image type, no tag
// where one is needed), Corruption (malformed JSON or layout, an entry path
// that leaves the archive), DigestMismatch (content that does not hash to its
// digest or has the wrong size), Unsupported (unknown media types),
// ResourceExhausted (documents over the size caps of manifest.hpp), IO.

#include <memory>
#include <string>

#include "fetcher/puller.hpp"

namespace prov::fetcher {

// The annotation naming a layer's entry inside a docker-save archive.
inline constexpr const char* kArchivePathAnnotation = "io.provisioner.docker-archive.path";

// Bytes per chunk handed to a sink.
inline constexpr std::size_t kLocalChunkBytes = 1u << 20;

class OciLayoutPuller final : public Puller {
 public:
  static Try<std::unique_ptr<OciLayoutPuller>> create(actors::Runtime& runtime);

  // InvalidArgument unless image.type() is OCI_LAYOUT with a path.
  actors::Future<messages::ResolvedImage> resolve(const messages::Image& image,
                                                  const messages::Platform& platform) override;
  using Puller::fetchBlob;
  actors::Future<Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                    const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink,
                                    std::shared_ptr<BlobSources> sources) override;

 private:
  explicit OciLayoutPuller(actors::Runtime& runtime) : runtime_(runtime) {}
  actors::Runtime& runtime_;
};

class DockerArchivePuller final : public Puller {
 public:
  // `tarballDir` (may be empty) is where DOCKER images are looked for;
  // without it only DOCKER_ARCHIVE images are served. Nothing is read here.
  static Try<std::unique_ptr<DockerArchivePuller>> create(actors::Runtime& runtime, std::string tarballDir = {});

  // InvalidArgument for other image types, or DOCKER without a tarballDir.
  actors::Future<messages::ResolvedImage> resolve(const messages::Image& image,
                                                  const messages::Platform& platform) override;
  // The archive is the one resolve() used: resolved.endpoint().
  using Puller::fetchBlob;
  actors::Future<Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                    const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink,
                                    std::shared_ptr<BlobSources> sources) override;

 private:
  DockerArchivePuller(actors::Runtime& runtime, std::string tarballDir)
      : runtime_(runtime), tarballDir_(std::move(tarballDir)) {}
  actors::Runtime& runtime_;
  std::string tarballDir_;
};

}  // namespace prov::fetcher
