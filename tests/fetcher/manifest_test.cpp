#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "fetcher/digest.hpp"
#include "fetcher/manifest.hpp"
#include "testkit/files.hpp"

namespace prov::fetcher {
namespace {

std::string digestOf(const std::string& name) { return sha256Digest(name); }

std::string descriptor(const std::string& mediaType, const std::string& name, int size, const std::string& extra = "") {
  return R"({"mediaType": ")" + mediaType + R"(", "size": )" + std::to_string(size) + R"(, "digest": ")" +
         digestOf(name) + "\"" + extra + "}";
}

std::string schema2(const std::string& layers) {
  return R"({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": )" +
         descriptor(mediatype::kDockerConfig, "config", 7023) + R"(, "layers": [)" + layers + "]}";
}

std::string oci(const std::string& layers, const std::string& mediaTypeField = "") {
  return R"({"schemaVersion": 2, )" + mediaTypeField + R"("config": )" +
         descriptor(mediatype::kOciConfig, "config", 100) + R"(, "layers": [)" + layers + "]}";
}

std::string index(const std::string& mediaTypeField = "") {
  return R"({"schemaVersion": 2, )" + mediaTypeField + R"("manifests": [)" +
         descriptor(mediatype::kOciManifest, "amd64", 500,
                    R"(, "platform": {"os": "linux", "architecture": "amd64"})") +
         ", " +
         descriptor(mediatype::kOciManifest, "arm64", 500,
                    R"(, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"})") +
         ", " +
         descriptor(mediatype::kOciManifest, "armv7", 500,
                    R"(, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"})") +
         "]}";
}

std::string v1(const std::string& id, const std::string& parent, const std::string& config = "") {
  std::string json = R"({"id":")" + id + "\"";
  if (!parent.empty()) json += R"(,"parent":")" + parent + "\"";
  if (!config.empty()) json += R"(,"config":)" + config;
  json += "}";
  std::string escaped;
  for (char c : json) {
    if (c == '"') escaped += '\\';
    escaped += c;
  }
  return escaped;
}

const std::string kId1 = std::string(64, '1');
const std::string kId2 = std::string(64, '2');
const std::string kId3 = std::string(64, '3');

std::string schema1() {
  // Top layer first, as schema 1 lists them; two layers share a blob.
  return R"({"name": "library/busybox", "tag": "latest", "architecture": "amd64", "schemaVersion": 1,
    "fsLayers": [{"blobSum": ")" +
         digestOf("a") + R"("}, {"blobSum": ")" + digestOf("a") + R"("}, {"blobSum": ")" + digestOf("base") + R"("}],
    "history": [{"v1Compatibility": ")" +
         v1(kId3, kId2, R"({"Cmd":["sh"],"Env":["PATH=/bin"],"Entrypoint":null,"WorkingDir":"/w"})") +
         R"("}, {"v1Compatibility": ")" + v1(kId2, kId1) + R"("}, {"v1Compatibility": ")" + v1(kId1, "") +
         R"("}],
    "signatures": [{"header": {"jwk": {"crv": "P-256", "kid": "K", "kty": "EC", "x": "x", "y": "y"}, "alg": "ES256"},
                    "signature": "sig", "protected": "p"}]})";
}

messages::Manifest manifestOf(const Try<Document>& doc) {
  EXPECT_TRUE(doc.isSome()) << (doc.isError() ? doc.error().message : "");
  if (doc.isError() || !std::holds_alternative<messages::Manifest>(*doc)) {
    ADD_FAILURE() << "not a manifest";
    return {};
  }
  return std::get<messages::Manifest>(*doc);
}

void expectError(const Try<Document>& doc, ErrorKind kind, const std::string& mentions) {
  ASSERT_TRUE(doc.isError()) << "accepted a document that mentions '" << mentions << "'";
  EXPECT_EQ(kind, doc.error().kind) << doc.error().message;
  EXPECT_NE(std::string::npos, doc.error().message.find(mentions)) << doc.error().message;
}

// Mesos DockerSpecTest.ParseV2_2ImageManifest.
TEST(ManifestTest, DockerSchema2) {
  const std::string layers = descriptor(mediatype::kDockerLayerGzip, "l1", 1) + ", " +
                             descriptor(mediatype::kDockerLayerGzip, "l2", 2) + ", " +
                             descriptor(mediatype::kDockerLayerGzip, "l3", 3);
  auto m = manifestOf(parseManifestDocument(schema2(layers), mediatype::kDockerSchema2));
  EXPECT_EQ(messages::Manifest::DOCKER_SCHEMA2, m.kind());
  EXPECT_EQ(2, m.schema_version());
  EXPECT_EQ(mediatype::kDockerSchema2, m.media_type());
  EXPECT_EQ(mediatype::kDockerConfig, m.config().media_type());
  EXPECT_EQ(7023, m.config().size());
  EXPECT_EQ(digestOf("config"), m.config().digest());
  ASSERT_EQ(3, m.layers_size());
  EXPECT_EQ(digestOf("l1"), m.layers(0).digest());
  EXPECT_EQ(3, m.layers(2).size());
}

// Mesos DockerSpecTest.ParseInvalidV2_2ImageManifest and
// ValidateV2_2ImageManifestLayersNonEmpty.
TEST(ManifestTest, InvalidSchema2) {
  expectError(parseManifestDocument(R"({"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
      "config": )" + descriptor(mediatype::kDockerConfig, "c", 1) +
                                        "}",
                                    ""),
              ErrorKind::Corruption, "schemaVersion");
  expectError(parseManifestDocument(schema2(""), ""), ErrorKind::Corruption, "at least one layer");
  // schema 2 must name its media type in the body.
  expectError(parseManifestDocument(R"({"schemaVersion": 2, "config": )" +
                                        descriptor(mediatype::kDockerConfig, "c", 1) + R"(, "layers": [)" +
                                        descriptor(mediatype::kDockerLayerGzip, "l", 1) + "]}",
                                    mediatype::kDockerSchema2),
              ErrorKind::Corruption, "mediaType");
}

// Mesos DockerSpecTest.ParseV2ImageManifest.
TEST(ManifestTest, DockerSchema1BaseFirst) {
  auto m = manifestOf(parseManifestDocument(schema1(), mediatype::kDockerSchema1Signed));
  EXPECT_EQ(messages::Manifest::DOCKER_SCHEMA1, m.kind());
  EXPECT_EQ(1, m.schema_version());
  EXPECT_EQ("library/busybox", m.name());
  EXPECT_EQ("latest", m.tag());
  EXPECT_EQ("amd64", m.architecture());
  ASSERT_EQ(3, m.layers_size());
  EXPECT_EQ(digestOf("base"), m.layers(0).digest());  // reversed: base first
  EXPECT_EQ(digestOf("a"), m.layers(1).digest());
  EXPECT_EQ(digestOf("a"), m.layers(2).digest());
  EXPECT_EQ(kId1, m.v1_ids(0));
  EXPECT_EQ(kId3, m.v1_ids(2));
  auto config = schema1Config(m);
  ASSERT_TRUE(config.isSome()) << config.error().message;
  EXPECT_EQ("sh", config->cmd(0));
  EXPECT_EQ("PATH=/bin", config->env(0));
  EXPECT_EQ(0, config->entrypoint_size());  // null
  EXPECT_EQ("/w", config->working_dir());
}

// A signed schema 1 body as libtrust writes it: the payload's closing
// "\n}" replaced by the signatures; each protected header says how to
// rebuild the payload (formatLength bytes, then formatTail).
std::string signedSchema1(const std::string& payload, const std::vector<std::pair<long, std::string>>& headers) {
  const std::size_t cut = payload.rfind('}');
  std::string body = payload.substr(0, cut);
  while (!body.empty() && (body.back() == '\n' || body.back() == ' ')) body.pop_back();
  body += ",\n   \"signatures\": [";
  for (std::size_t i = 0; i < headers.size(); ++i) {
    const std::string header = R"({"formatLength":)" + std::to_string(headers[i].first) + R"(,"formatTail":")" +
                               testing::base64Url(headers[i].second) + R"(","time":"2026-12-01T00:00:00Z"})";
    body += std::string(i ? "," : "") + R"({"header":{"alg":"ES256"},"signature":"c2ln","protected":")" +
            testing::base64Url(header) + "\"}";
  }
  return body + "]\n}";
}

// A signed schema 1 manifest's digest is its JWS payload's (what
// Docker-Content-Digest and a @sha256: reference name), never the body's:
// the registry signs it again on every GET.
TEST(ManifestTest, SignedSchema1DigestIsThePayloads) {
  std::string payload = schema1();
  payload.erase(payload.find(",\n    \"signatures\""));
  payload += "\n}";
  const std::size_t cut = payload.rfind('}');
  std::string kept = payload.substr(0, cut);
  while (!kept.empty() && (kept.back() == '\n' || kept.back() == ' ')) kept.pop_back();
  const long length = static_cast<long>(kept.size());
  const std::string tail = payload.substr(kept.size());
  const std::string body = signedSchema1(payload, {{length, tail}});
  ASSERT_NE(payload, body);
  auto rebuilt = manifestPayload(body);
  ASSERT_TRUE(rebuilt.isSome()) << rebuilt.error().message;
  EXPECT_EQ(payload, *rebuilt);
  EXPECT_EQ(sha256Digest(payload), sha256Digest(*rebuilt));
  // Two signatures that agree; an unsigned document or another kind: as is.
  EXPECT_EQ(payload, *manifestPayload(signedSchema1(payload, {{length, tail}, {length, tail}})));
  EXPECT_EQ(payload, *manifestPayload(payload));
  EXPECT_EQ("{\"schemaVersion\":2}", *manifestPayload("{\"schemaVersion\":2}"));
  // Malformed or disagreeing signatures.
  for (const auto& broken : {signedSchema1(payload, {{length, tail}, {length - 1, tail}}),
                             signedSchema1(payload, {{1 << 30, tail}}), signedSchema1(payload, {{-1, tail}})}) {
    auto refused = manifestPayload(broken);
    ASSERT_TRUE(refused.isError());
    EXPECT_EQ(ErrorKind::Corruption, refused.error().kind) << refused.error().message;
  }
  // More than 16 signatures, and base64 that is not base64url: refused.
  EXPECT_TRUE(
      manifestPayload(signedSchema1(payload, std::vector<std::pair<long, std::string>>(17, {length, tail}))).isError());
  std::string padded = body;
  const auto at = padded.find("\"protected\":\"") + 13;
  padded.insert(padded.find('"', at), "==");
  EXPECT_TRUE(manifestPayload(padded).isError());
  // Not schema 1 (schemaVersion 2): the body as it is, signatures or not.
  EXPECT_EQ(R"({"schemaVersion":2,"signatures":[]})", *manifestPayload(R"({"schemaVersion":2,"signatures":[]})"));
  std::string noProtected = body;
  noProtected.replace(noProtected.find("\"protected\""), 11, "\"unprotect\"");
  EXPECT_TRUE(manifestPayload(noProtected).isError());
}

// Mesos ParseInvalidV2ImageManifest, ValidateV2ImageManifestFsLayersNonEmpty,
// ValidateV2ImageManifestSignaturesNonEmpty.
TEST(ManifestTest, InvalidSchema1) {
  expectError(parseManifestDocument(R"({"name": "n", "tag": "t", "architecture": "amd64", "fsLayers": []})", ""),
              ErrorKind::Corruption, "schemaVersion");
  expectError(parseManifestDocument(R"({"name": "n", "tag": "t", "architecture": "amd64", "schemaVersion": 1,
      "fsLayers": [], "signatures": [{}]})",
                                    ""),
              ErrorKind::Corruption, "fsLayers");
  expectError(parseManifestDocument(R"({"name": "n", "tag": "t", "architecture": "amd64", "schemaVersion": 1,
      "fsLayers": [{"blobSum": ")" + digestOf("x") +
                                        R"("}]})",
                                    ""),
              ErrorKind::Corruption, "history");
  expectError(parseManifestDocument(R"({"name": "n", "tag": "t", "architecture": "amd64", "schemaVersion": 1,
      "fsLayers": [{"blobSum": "sha256:../../x"}], "history": [{"v1Compatibility": ")" +
                                        v1(kId1, "") + R"("}]})",
                                    ""),
              ErrorKind::InvalidArgument, "digest");
}

TEST(ManifestTest, OciManifestAndLayerCompressions) {
  const std::string layers = descriptor(mediatype::kOciLayerGzip, "g", 1) + ", " +
                             descriptor(mediatype::kOciLayerZstd, "z", 2) + ", " +
                             descriptor(mediatype::kOciLayer, "t", 3, R"(, "annotations": {"k": "v"})");
  auto m = manifestOf(parseManifestDocument(
      oci(layers, R"("mediaType": "application/vnd.oci.image.manifest.v1+json", )"), mediatype::kOciManifest));
  EXPECT_EQ(messages::Manifest::OCI, m.kind());
  ASSERT_EQ(3, m.layers_size());
  EXPECT_EQ("v", m.layers(2).annotations().at("k"));
  EXPECT_EQ(Compression::Gzip, *layerCompression(m.layers(0).media_type()));
  EXPECT_EQ(Compression::Zstd, *layerCompression(m.layers(1).media_type()));
  EXPECT_EQ(Compression::None, *layerCompression(m.layers(2).media_type()));
  EXPECT_EQ(Compression::None, *layerCompression(mediatype::kDockerLayer));
  EXPECT_EQ(Compression::Gzip, *layerCompression(mediatype::kDockerLayerGzip));
  // No mediaType anywhere (a local layout): the shape says OCI manifest.
  EXPECT_EQ(messages::Manifest::OCI, manifestOf(parseManifestDocument(oci(layers), "")).kind());
}

TEST(ManifestTest, UnknownLayerOrConfigTypesAreUnsupported) {
  expectError(parseManifestDocument(oci(descriptor("application/x-tar+lz4", "l", 1)), ""), ErrorKind::Unsupported,
              "application/x-tar+lz4");
  const std::string artifact = R"({"schemaVersion": 2, "config": )" +
                               descriptor("application/vnd.cncf.helm.config.v1+json", "c", 1) + R"(, "layers": [)" +
                               descriptor(mediatype::kOciLayerGzip, "l", 1) + "]}";
  expectError(parseManifestDocument(artifact, ""), ErrorKind::Unsupported, "not a container image config");
}

TEST(ManifestTest, OciIndexAndDockerList) {
  auto doc = parseManifestDocument(index(), mediatype::kOciIndex);
  ASSERT_TRUE(doc.isSome()) << doc.error().message;
  ASSERT_TRUE(std::holds_alternative<messages::Index>(*doc));
  const auto& idx = std::get<messages::Index>(*doc);
  ASSERT_EQ(3, idx.manifests_size());
  EXPECT_EQ("arm64", idx.manifests(1).platform().architecture());
  auto list = parseManifestDocument(
      index(R"("mediaType": "application/vnd.docker.distribution.manifest.list.v2+json", )"), mediatype::kDockerList);
  ASSERT_TRUE(list.isSome()) << list.error().message;
  EXPECT_EQ(mediatype::kDockerList, std::get<messages::Index>(*list).media_type());
}

TEST(ManifestTest, PlatformSelection) {
  auto doc = parseManifestDocument(index(), "");
  ASSERT_TRUE(doc.isSome()) << doc.error().message;
  const auto& idx = std::get<messages::Index>(*doc);
  messages::Platform want;
  want.set_os("linux");
  want.set_architecture("amd64");
  EXPECT_EQ(digestOf("amd64"), selectManifest(idx, want)->digest());
  want.set_architecture("arm64");
  EXPECT_EQ(digestOf("arm64"), selectManifest(idx, want)->digest());
  want.set_variant("v8");
  EXPECT_EQ(digestOf("arm64"), selectManifest(idx, want)->digest());
  want.set_architecture("arm");
  want.set_variant("v7");
  EXPECT_EQ(digestOf("armv7"), selectManifest(idx, want)->digest());
  want.set_variant("v6");
  auto none = selectManifest(idx, want);
  ASSERT_TRUE(none.isError());
  EXPECT_EQ(ErrorKind::NotFound, none.error().kind);
  EXPECT_NE(std::string::npos, none.error().message.find("linux/arm/v7")) << none.error().message;
  EXPECT_EQ("linux", hostPlatform().os());
  EXPECT_FALSE(hostPlatform().architecture().empty());
}

// CVE-2021-41190: a document must be what it declares.
TEST(ManifestTest, MediaTypeMustMatchShape) {
  const std::string layers = descriptor(mediatype::kOciLayerGzip, "l", 1);
  expectError(parseManifestDocument(index(R"("mediaType": "application/vnd.oci.image.manifest.v1+json", )"), ""),
              ErrorKind::Corruption, "is an index but declares");
  expectError(parseManifestDocument(oci(layers, R"("mediaType": "application/vnd.oci.image.index.v1+json", )"), ""),
              ErrorKind::Corruption, "is an image manifest but declares");
  expectError(parseManifestDocument(index(), mediatype::kOciManifest), ErrorKind::Corruption,
              "is an index but declares");
  expectError(parseManifestDocument(oci(layers, R"("mediaType": "application/vnd.oci.image.manifest.v1+json", )"),
                                    mediatype::kOciIndex),
              ErrorKind::Corruption, "disagrees");
  // Both shapes at once.
  const std::string both = R"({"schemaVersion": 2, "manifests": [], "config": )" +
                           descriptor(mediatype::kOciConfig, "c", 1) + R"(, "layers": [)" + layers + "]}";
  expectError(parseManifestDocument(both, ""), ErrorKind::Corruption, "more than one kind");
  expectError(parseManifestDocument(R"({"schemaVersion": 2, "mediaType": "text/html"})", ""), ErrorKind::Unsupported,
              "text/html");
}

TEST(ManifestTest, DuplicateKeysAreRefused) {
  const std::string layers = descriptor(mediatype::kOciLayerGzip, "l", 1);
  expectError(parseManifestDocument(R"({"schemaVersion": 2, "schemaVersion": 2, "config": )" +
                                        descriptor(mediatype::kOciConfig, "c", 1) + R"(, "layers": [)" + layers + "]}",
                                    ""),
              ErrorKind::Corruption, "appears twice");
  const std::string twoDigests =
      R"({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 1, "digest": ")" + digestOf("a") +
      R"(", "digest": ")" + digestOf("b") + R"("})";
  expectError(parseManifestDocument(oci(twoDigests), ""), ErrorKind::Corruption, "appears twice");
}

TEST(ManifestTest, DigestsAreValidatedBeforeUse) {
  const std::string evil = R"({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 1,
                               "digest": "sha256:../../../../etc/passwd"})";
  expectError(parseManifestDocument(oci(evil), ""), ErrorKind::InvalidArgument, "layers[0]");
  const std::string negative =
      R"({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": -5, "digest": ")" + digestOf("x") +
      R"("})";
  expectError(parseManifestDocument(oci(negative), ""), ErrorKind::Corruption, "negative size");
}

TEST(ManifestTest, SizeCapAndMalformedJson) {
  std::string big = oci(descriptor(mediatype::kOciLayerGzip, "l", 1));
  big.insert(big.size() - 1, ", \"pad\": \"" + std::string(kMaxManifestBytes, 'x') + "\"");
  expectError(parseManifestDocument(big, ""), ErrorKind::ResourceExhausted, "over the limit");
  expectError(parseManifestDocument("{\"schemaVersion\": 2,", ""), ErrorKind::Corruption, "offset");
  expectError(parseManifestDocument("[]", ""), ErrorKind::Corruption, "JSON object");
  expectError(parseManifestDocument("{}", ""), ErrorKind::Corruption, "neither");
}

TEST(ImageConfigTest, DockerConfigFields) {
  auto c = parseImageConfig(R"({
    "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
    "config": {"Env": ["PATH=/usr/bin", "A=b"], "Entrypoint": ["/entry"], "Cmd": ["-x"],
               "WorkingDir": "/srv", "User": "1000:1000", "Labels": {"k": "v"},
               "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "StopSignal": "SIGTERM"},
    "rootfs": {"type": "layers", "diff_ids": [")" +
                            digestOf("d1") + R"(", ")" + digestOf("d2") + R"("]},
    "history": [{"created_by": "ADD x", "empty_layer": false}, {"created_by": "CMD", "empty_layer": true}]})");
  ASSERT_TRUE(c.isSome()) << c.error().message;
  EXPECT_EQ("amd64", c->architecture());
  EXPECT_EQ(2, c->env_size());
  EXPECT_EQ("/entry", c->entrypoint(0));
  EXPECT_EQ("-x", c->cmd(0));
  EXPECT_EQ("/srv", c->working_dir());
  EXPECT_EQ("1000:1000", c->user());
  EXPECT_EQ("v", c->labels().at("k"));
  EXPECT_EQ("80/tcp", c->exposed_ports(0));
  EXPECT_EQ("/data", c->volumes(0));
  EXPECT_EQ("SIGTERM", c->stop_signal());
  ASSERT_EQ(2, c->diff_ids_size());
  EXPECT_EQ(digestOf("d2"), c->diff_ids(1));
  ASSERT_EQ(2, c->history_size());
  EXPECT_TRUE(c->history(1).empty_layer());
}

TEST(ImageConfigTest, InvalidConfigs) {
  EXPECT_TRUE(parseImageConfig(R"({"config": {}})").isError());  // no rootfs
  EXPECT_TRUE(parseImageConfig(R"({"rootfs": {"type": "squash", "diff_ids": []}})").isError());
  auto badDiff = parseImageConfig(R"({"rootfs": {"type": "layers", "diff_ids": ["sha256:xyz"]}})");
  ASSERT_TRUE(badDiff.isError());
  EXPECT_NE(std::string::npos, badDiff.error().message.find("diff_ids[0]"));
  EXPECT_TRUE(parseImageConfig(R"({"rootfs": {"type": "layers"}, "config": {"Env": "PATH=/"}})").isError());
  auto big = parseImageConfig(std::string(kMaxConfigBytes + 1, ' '));
  ASSERT_TRUE(big.isError());
  EXPECT_EQ(ErrorKind::ResourceExhausted, big.error().kind);
}

}  // namespace
}  // namespace prov::fetcher
