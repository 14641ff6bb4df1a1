#pragma once

// Parsing and validating registry documents into messages/image.proto:
// Docker v2 schema 1 and schema 2 manifests, Docker manifest lists, OCI
// manifests and OCI indexes, and image configs.
//
// Rules kept here, so nothing downstream has to:
//   - the body is at most `limit` bytes (ResourceExhausted);
//   - the document's declared media type (its `mediaType`, else the HTTP
//     Content-Type) must match its shape: an index cannot pose as a
//     manifest or the reverse (CVE-2021-41190), and a body whose mediaType
//     disagrees with the Content-Type is refused;
//   - no duplicated keys in a document or a descriptor (parsers that pick
//     different duplicates would see different images);
//   - every digest is validated before anyone uses it (CVE-2024-3727);
//   - layer and config media types must be ones this provisioner can unpack.
// Errors: Corruption for malformed JSON or a bad shape, InvalidArgument for a
// bad digest, Unsupported for unknown media types, ResourceExhausted for
// size caps. Each names the document and the problem.

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

#include "fetcher/types.hpp"
#include "messages/image.pb.h"

namespace prov::fetcher {

namespace mediatype {
inline constexpr const char* kDockerSchema1 = "application/vnd.docker.distribution.manifest.v1+json";
inline constexpr const char* kDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws";
inline constexpr const char* kDockerSchema2 = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr const char* kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr const char* kDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
// Uncompressed Docker layers (buildah and podman write them).
inline constexpr const char* kDockerLayer = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr const char* kDockerForeignLayerGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
inline constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr const char* kOciLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr const char* kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr const char* kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
// The Accept header for manifest requests: every type parseManifestDocument takes.
inline constexpr const char* kManifestAccept =
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.v1+prettyjws, "
    "application/vnd.docker.distribution.manifest.v1+json";
}  // namespace mediatype

inline constexpr std::size_t kMaxManifestBytes = 4u << 20;  // containerd's cap too
inline constexpr std::size_t kMaxConfigBytes = 8u << 20;
inline constexpr int kMaxEntries = 4096;  // layers in a manifest, manifests in an index

using Document = std::variant<messages::Manifest, messages::Index>;

// `contentType` is the HTTP Content-Type, or empty (local layouts).
Try<Document> parseManifestDocument(std::string_view body, std::string_view contentType,
                                    std::size_t limit = kMaxManifestBytes);

// The bytes a manifest's digest is taken over (the registry's
// Docker-Content-Digest, a "@sha256:" reference): for a signed schema 1
// manifest its JWS payload, the body without its signatures as each
// signature's protected header rebuilds it (the first formatLength bytes,
// then formatTail); every other body as it is. Corruption when the
// signatures are malformed or disagree. The signatures themselves are not
// verified: Docker's schema 1 keys are ephemeral and prove nothing. The
// manifest must be parsed from the payload, never from the body: only the
// payload is what the digest names (a body could carry other layers before
// signatures whose headers rebuild someone else's payload).
Try<std::string> manifestPayload(std::string_view body);

// Image config JSON (Docker or OCI).
Try<messages::ImageConfig> parseImageConfig(std::string_view body, std::size_t limit = kMaxConfigBytes);

// The config a schema 1 manifest carries in its top v1Compatibility entry.
Try<messages::ImageConfig> schema1Config(const messages::Manifest& manifest);

enum class Compression { None, Gzip, Zstd };
// The compression a layer media type names; Unsupported for a non-layer type.
Try<Compression> layerCompression(std::string_view mediaType);

// linux and this machine's architecture (amd64, arm64/v8, arm/v7, ...).
messages::Platform hostPlatform();

// The first manifest of `index` for `wanted` (os and architecture equal;
// variant equal when `wanted` names one, arm64's "" counting as "v8").
// NotFound listing the platforms the index has otherwise.
Try<messages::Descriptor> selectManifest(const messages::Index& index, const messages::Platform& wanted);

std::string toString(const messages::Platform& platform);  // "linux/arm64/v8"

}  // namespace prov::fetcher
