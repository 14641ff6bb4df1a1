// The registry client against the real registry server (Debian's
// docker-registry) with images pushed by skopeo: plain HTTP, TLS with a test
// CA and htpasswd Basic auth, Docker schema 2, OCI, and a multi-platform index.

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "tests/support/await.hpp"
#include "tests/support/fake_registry.hpp"
#include "tests/support/files.hpp"
#include "tests/support/image_builder.hpp"
#include "tests/support/real_registry.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::fetcher {
namespace {

using actors::Future;
using testing::ImageSpec;
using testing::OciLayout;
using testing::RealRegistry;
using testing::TarEntry;

// Hashes what it gets; keeps nothing.
class DigestSink : public ByteSink {
 public:
  DigestSink() : hasher_(*Hasher::create("sha256")) {}
  Future<Nothing> write(std::string_view chunk) override {
    hasher_.update(chunk);
    bytes_ += chunk.size();
    return Nothing{};
  }
  std::string digest() { return hasher_.finish(); }
  std::size_t bytes() const { return bytes_; }

 private:
  Hasher hasher_;
  std::size_t bytes_ = 0;
};

ImageSpec smallImage(const std::string& architecture, const std::string& marker) {
  ImageSpec spec;
  spec.architecture = architecture;
  spec.layers = {
      {TarEntry::directory("bin"), TarEntry::file("bin/hello", "#!/bin/sh\necho " + marker + "\n", 0755)},
      {TarEntry::directory("etc"), TarEntry::file("etc/marker", marker + "\n"),
       TarEntry::file("etc/big", std::string(300'000, 'b'))},
  };
  spec.env = {"PATH=/bin", "MARKER=" + marker};
  spec.cmd = {"/bin/hello"};
  return spec;
}

class RealRegistryTest : public testing::TemporaryDirectoryTest {
 protected:
  std::unique_ptr<RealRegistry> startRegistry(RealRegistry::Options options) {
    std::string error;
    auto registry = RealRegistry::start(sandbox() / "registry", options, error);
    EXPECT_NE(nullptr, registry) << error;
    return registry;
  }

  // Resolves and fetches every blob, checking each against what was built.
  void pullAndVerify(RegistryPuller& puller, const messages::ImageReference& ref, const messages::Platform& platform,
                     const testing::BuiltImage& built, const std::string& marker) {
    messages::Image image;
    *image.mutable_reference() = ref;
    Future<messages::ResolvedImage> resolved = puller.resolve(image, platform);
    AWAIT_READY(resolved);
    const auto& manifest = resolved->manifest();
    ASSERT_EQ(static_cast<int>(built.layerDigests.size()), manifest.layers_size());
    for (int i = 0; i < manifest.layers_size(); ++i) {
      EXPECT_EQ(built.layerDigests[i], manifest.layers(i).digest());
      auto sink = std::make_shared<DigestSink>();
      AWAIT_READY(puller.fetchBlob(image, resolved.get(), manifest.layers(i), sink));
      EXPECT_EQ(built.layerDigests[i], sink->digest());
      EXPECT_EQ(built.layerBlobs[i].size(), sink->bytes());
    }
    EXPECT_EQ(testing::strings(built.diffIds), testing::strings(resolved->config().diff_ids()));
    ASSERT_EQ(2, resolved->config().env_size());
    EXPECT_EQ("MARKER=" + marker, resolved->config().env(1));
    EXPECT_EQ(sha256Digest(resolved->config_json()), manifest.config().digest());
  }

  actors::Runtime runtime_;
};

messages::Platform platform(const std::string& architecture) {
  messages::Platform p;
  p.set_os("linux");
  p.set_architecture(architecture);
  return p;
}

TEST_F(RealRegistryTest, PlainHttpDockerSchema2AndOci) {
  auto registry = startRegistry({});
  ASSERT_NE(nullptr, registry);
  OciLayout layout(sandbox() / "layout");
  const auto built = layout.addImage(smallImage("amd64", "plain"));
  layout.tag(built, "v1");
  auto pushed = registry->push("oci:" + layout.dir().string() + ":v1", "test/schema2:v1", "v2s2");
  ASSERT_EQ(0, pushed.status) << pushed.output;
  pushed = registry->push("oci:" + layout.dir().string() + ":v1", "test/oci:v1", "oci");
  ASSERT_EQ(0, pushed.status) << pushed.output;

  auto puller = RegistryPuller::create(runtime_, RegistryOptions{}, 3);
  ASSERT_TRUE(puller.isSome());
  AWAIT_EXPECT_READY((*puller)->client().ping(*parseUrl(registry->url())));
  pullAndVerify(**puller, *parseNormalized(registry->hostPort() + "/test/schema2:v1"), platform("amd64"), built,
                "plain");
  pullAndVerify(**puller, *parseNormalized(registry->hostPort() + "/test/oci:v1"), platform("amd64"), built, "plain");

  // Schema 2 really arrived as schema 2, OCI as OCI.
  messages::Image image;
  *image.mutable_reference() = *parseNormalized(registry->hostPort() + "/test/schema2:v1");
  Future<messages::ResolvedImage> schema2 = (*puller)->resolve(image, platform("amd64"));
  AWAIT_READY(schema2);
  EXPECT_EQ(messages::Manifest::DOCKER_SCHEMA2, schema2->manifest().kind());
  *image.mutable_reference() = *parseNormalized(registry->hostPort() + "/test/oci:v1");
  Future<messages::ResolvedImage> oci = (*puller)->resolve(image, platform("amd64"));
  AWAIT_READY(oci);
  EXPECT_EQ(messages::Manifest::OCI, oci->manifest().kind());
  EXPECT_EQ(built.manifestDigest, oci->manifest_digest());

  // By digest, and a tag that is not there.
  *image.mutable_reference() = *parseNormalized(registry->hostPort() + "/test/oci@" + built.manifestDigest);
  AWAIT_EXPECT_READY((*puller)->resolve(image, platform("amd64")));
  *image.mutable_reference() = *parseNormalized(registry->hostPort() + "/test/oci:nope");
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, (*puller)->resolve(image, platform("amd64")));
}

TEST_F(RealRegistryTest, MultiPlatformIndex) {
  auto registry = startRegistry({});
  ASSERT_NE(nullptr, registry);
  OciLayout layout(sandbox() / "layout");
  const ImageSpec amdSpec = smallImage("amd64", "amd");
  ImageSpec armSpec = smallImage("arm64", "arm");
  armSpec.variant = "v8";
  const auto amd = layout.addImage(amdSpec);
  const auto arm = layout.addImage(armSpec);
  layout.tagIndex({{amd, amdSpec}, {arm, armSpec}}, "multi");
  auto pushed = registry->push("oci:" + layout.dir().string() + ":multi", "test/multi:latest", "", true);
  ASSERT_EQ(0, pushed.status) << pushed.output;

  auto puller = RegistryPuller::create(runtime_, RegistryOptions{}, 2);
  ASSERT_TRUE(puller.isSome());
  const auto ref = *parseNormalized(registry->hostPort() + "/test/multi");
  pullAndVerify(**puller, ref, platform("amd64"), amd, "amd");
  pullAndVerify(**puller, ref, platform("arm64"), arm, "arm");
}

TEST_F(RealRegistryTest, TlsWithTestCaAndHtpasswd) {
  auto registry = startRegistry({.tls = true, .user = std::make_pair(std::string("alice"), std::string("pa55word"))});
  ASSERT_NE(nullptr, registry);
  OciLayout layout(sandbox() / "layout");
  const auto built = layout.addImage(smallImage("amd64", "tls"));
  layout.tag(built, "v1");
  auto pushed = registry->push("oci:" + layout.dir().string() + ":v1", "test/secure:v1", "v2s2");
  ASSERT_EQ(0, pushed.status) << pushed.output;

  // The registry is the default one (--docker_registry=https://...), so the
  // reference needs no registry and the localhost http rule does not apply.
  const auto ref = *parseNormalized("test/secure:v1");
  RegistryOptions options;
  options.hubUrl = registry->url();
  options.retry.maxAttempts = 2;
  options.http.extraCaFile = registry->caFile().string();
  options.auths = *parseDockerConfig(R"({"auths":{")" + registry->hostPort() +
                                     R"(":{"auth":"YWxpY2U6cGE1NXdvcmQ="}}})");  // alice:pa55word
  auto puller = RegistryPuller::create(runtime_, options, 2);
  ASSERT_TRUE(puller.isSome());
  pullAndVerify(**puller, ref, platform("amd64"), built, "tls");

  messages::Image image;
  *image.mutable_reference() = ref;
  // Without the test CA: the certificate is not trusted; not retried.
  RegistryOptions untrusted = options;
  untrusted.http.extraCaFile.clear();
  auto noCa = RegistryPuller::create(runtime_, untrusted, 2);
  Future<messages::ResolvedImage> refused = (*noCa)->resolve(image, platform("amd64"));
  AWAIT_EXPECT_ERROR(ErrorKind::IO, refused);
  EXPECT_NE(std::string::npos,
            refused.failure().message.find("certificate failed verification: unable to get local issuer certificate"))
      << refused.failure().message;

  // Without credentials, and with a wrong password.
  RegistryOptions anonymous = options;
  anonymous.auths.clear();
  auto noCreds = RegistryPuller::create(runtime_, anonymous, 2);
  AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, (*noCreds)->resolve(image, platform("amd64")));
  image.mutable_credentials()->set_username("alice");
  image.mutable_credentials()->set_password("not-her-password");
  Future<messages::ResolvedImage> wrong = (*puller)->resolve(image, platform("amd64"));
  AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, wrong);
  EXPECT_EQ(std::string::npos, wrong.failure().message.find("not-her-password"));

  // A missing CA file is a clear error at creation.
  RegistryOptions badCa = options;
  badCa.http.extraCaFile = (sandbox() / "missing.pem").string();
  auto failed = RegistryPuller::create(runtime_, badCa, 2);
  ASSERT_TRUE(failed.isError());
  EXPECT_NE(std::string::npos, failed.error().message.find("missing.pem"));
}

// The scheme rule on loopback: a TLS registry named by its 127.0.0.1
// address is reached over TLS and verified (its CA given); without the CA
// the certificate error is the answer, never a retry over plain http; when
// listed as insecure it is reached over TLS without verification.
TEST_F(RealRegistryTest, TlsOnLoopbackIsVerifiedAndNeverFallsBackToPlain) {
  auto registry = startRegistry({.tls = true});
  ASSERT_NE(nullptr, registry);
  OciLayout layout(sandbox() / "layout");
  const auto built = layout.addImage(smallImage("amd64", "loopback-tls"));
  layout.tag(built, "v1");
  auto pushed = registry->push("oci:" + layout.dir().string() + ":v1", "test/tls:v1", "v2s2");
  ASSERT_EQ(0, pushed.status) << pushed.output;
  const auto ref = *parseNormalized(registry->hostPort() + "/test/tls:v1");

  std::vector<std::string> plainFound;
  RegistryOptions options;
  options.retry.maxAttempts = 2;
  options.http.extraCaFile = registry->caFile().string();
  options.http.onPlainFound = [&](const std::string& origin, bool plain) {
    plainFound.push_back(origin + (plain ? " plain" : " tls"));
  };
  auto puller = RegistryPuller::create(runtime_, options, 2);
  ASSERT_TRUE(puller.isSome());
  pullAndVerify(**puller, ref, platform("amd64"), built, "loopback-tls");
  EXPECT_TRUE(plainFound.empty());

  messages::Image image;
  *image.mutable_reference() = ref;
  RegistryOptions untrusted = options;
  untrusted.http.extraCaFile.clear();
  auto noCa = RegistryPuller::create(runtime_, untrusted, 2);
  Future<messages::ResolvedImage> refused = (*noCa)->resolve(image, platform("amd64"));
  AWAIT_EXPECT_ERROR(ErrorKind::IO, refused);
  EXPECT_NE(std::string::npos,
            refused.failure().message.find("'https://" + registry->hostPort() +
                                           "/v2/test/tls/manifests/v1': the server's certificate failed verification: "
                                           "unable to get local issuer certificate"))
      << refused.failure().message;
  EXPECT_TRUE(plainFound.empty());  // no plain http was tried

  // Listed as insecure: TLS without verification.
  RegistryOptions insecure = untrusted;
  insecure.insecure = {registry->hostPort()};
  auto anyCert = RegistryPuller::create(runtime_, insecure, 2);
  pullAndVerify(**anyCert, ref, platform("amd64"), built, "loopback-tls");

  // Remembered as plain by an earlier run, but TLS now: tried over TLS
  // again after the plain request's 400, and the memory corrected.
  RegistryOptions stale = options;
  stale.http.plainOrigins = {registry->hostPort()};
  auto remembered = RegistryPuller::create(runtime_, stale, 2);
  pullAndVerify(**remembered, ref, platform("amd64"), built, "loopback-tls");
  EXPECT_EQ(std::vector<std::string>{registry->hostPort() + " tls"}, plainFound);
}

// A TLS registry whose blobs redirect to plain http: refused, though the
// target is on loopback (https never becomes http), and nothing reaches it.
TEST_F(RealRegistryTest, ATlsRegistrysRedirectToPlainHttpIsRefused) {
  testing::FakeRegistry storage("127.0.0.2");
  auto registry = startRegistry({.tls = true, .redirectBlobsTo = storage.url() + "/"});
  ASSERT_NE(nullptr, registry);
  storage.serveDirectory(registry->storageDir().string());
  OciLayout layout(sandbox() / "layout");
  const auto built = layout.addImage(smallImage("amd64", "downgrade"));
  layout.tag(built, "v1");
  auto pushed = registry->push("oci:" + layout.dir().string() + ":v1", "test/downgrade:v1", "v2s2");
  ASSERT_EQ(0, pushed.status) << pushed.output;
  RegistryOptions options;
  options.retry.maxAttempts = 1;
  options.http.extraCaFile = registry->caFile().string();
  auto puller = RegistryPuller::create(runtime_, options, 2);
  messages::Image image;
  *image.mutable_reference() = *parseNormalized(registry->hostPort() + "/test/downgrade:v1");
  Future<messages::ResolvedImage> resolved = (*puller)->resolve(image, platform("amd64"));
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, resolved);  // the config blob is redirected too
  EXPECT_NE(std::string::npos, resolved.failure().message.find("Refused a redirect from 'https://" +
                                                               registry->hostPort() + "/v2/test/downgrade/blobs/"))
      << resolved.failure().message;
  EXPECT_NE(std::string::npos, resolved.failure().message.find("to plain http 'http://127.0.0.2:"));
  EXPECT_EQ(0u, storage.requests().size());
}

// A plain registry on 127.0.0.1 whose blobs redirect (the registry's
// redirect middleware) to a plain blob server on 127.0.0.2: followed, as the
// registry was reached over plain http, and the blob server never sees the
// registry's credentials.
TEST_F(RealRegistryTest, PlainLoopbackRegistryRedirectsBlobsToAnotherLoopbackHost) {
  testing::FakeRegistry storage("127.0.0.2");
  auto registry = startRegistry(
      {.user = std::make_pair(std::string("alice"), std::string("pa55word")), .redirectBlobsTo = storage.url() + "/"});
  ASSERT_NE(nullptr, registry);
  storage.serveDirectory(registry->storageDir().string());
  OciLayout layout(sandbox() / "layout");
  const auto built = layout.addImage(smallImage("amd64", "redirected"));
  layout.tag(built, "v1");
  auto pushed = registry->push("oci:" + layout.dir().string() + ":v1", "test/redirected:v1", "v2s2");
  ASSERT_EQ(0, pushed.status) << pushed.output;

  std::vector<std::string> plainFound;
  RegistryOptions options;
  options.retry.maxAttempts = 2;
  options.auths = *parseDockerConfig(R"({"auths":{")" + registry->hostPort() +
                                     R"(":{"auth":"YWxpY2U6cGE1NXdvcmQ="}}})");  // alice:pa55word
  options.http.onPlainFound = [&](const std::string& origin, bool plain) {
    plainFound.push_back(origin + (plain ? " plain" : " tls"));
  };
  auto puller = RegistryPuller::create(runtime_, options, 2);
  ASSERT_TRUE(puller.isSome());
  pullAndVerify(**puller, *parseNormalized(registry->hostPort() + "/test/redirected:v1"), platform("amd64"), built,
                "redirected");
  EXPECT_EQ(built.layerDigests.size() + 1, storage.count("/docker/registry/v2/blobs/"));  // layers and config
  EXPECT_FALSE(storage.sawAuthorization());
  // Found plain once (the first request's TLS attempt), then remembered.
  EXPECT_EQ(std::vector<std::string>{registry->hostPort() + " plain"}, plainFound);
}

}  // namespace
}  // namespace prov::fetcher
