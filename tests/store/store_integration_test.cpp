// The image store against the real registry server (Debian's
// docker-registry), with images built by the test helper and pushed by
// skopeo: Docker schema 2 (gzip) and OCI (gzip and zstd layers), whiteouts
// and hardlinks included; the layers on disk are checked file by file.

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/local/local.hpp"
#include "fetcher/manifest.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "store/image_store.hpp"
#include "testkit/files.hpp"
#include "testkit/image_builder.hpp"
#include "testkit/real_registry.hpp"
#include "tests/support/await.hpp"
#include "tests/support/fake_registry.hpp"
#include "tests/support/registry_fixture.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using testing::ImageSpec;
using testing::OciLayout;
using testing::RealRegistry;
using testing::TarCompression;
using testing::TarEntry;

ImageSpec sampleImage(TarCompression compression) {
  TarEntry link;
  link.path = "bin/ls";
  link.type = TarEntry::Type::Hardlink;
  link.content = "bin/busybox";
  ImageSpec spec;
  spec.architecture = fetcher::hostPlatform().architecture();
  spec.compression = compression;
  spec.layers = {
      {TarEntry::directory("bin"), TarEntry::file("bin/busybox", std::string(200'000, 'B'), 0755), link,
       TarEntry::directory("etc"), TarEntry::file("etc/old", "old"), TarEntry::directory("var/cache"),
       TarEntry::file("var/cache/junk", "junk")},
      {TarEntry::file("etc/.wh.old", ""), TarEntry::file("var/cache/.wh..wh..opq", ""),
       TarEntry::file("var/cache/fresh", "fresh"), TarEntry::symlink("bin/sh", "busybox")},
  };
  spec.env = {"PATH=/bin"};
  spec.cmd = {"/bin/sh"};
  return spec;
}

class StoreIntegrationTest : public testing::RealRegistryTest {
 protected:
  void SetUp() override {
    RealRegistryTest::SetUp();
    if (HasFatalFailure()) return;
    auto puller = fetcher::RegistryPuller::create(runtime_, fetcher::RegistryOptions{}, 4);
    ASSERT_TRUE(puller.isSome()) << puller.error().message;
    std::shared_ptr<fetcher::Puller> shared(std::move(*puller));
    ImageStoreOptions options;
    options.storeDir = (sandbox() / "store").string();
    auto store = ImageStore::create(runtime_, options, [shared](const messages::Image&) { return shared; });
    ASSERT_TRUE(store.isSome()) << store.error().message;
    store_ = std::move(*store);
    AWAIT_READY(store_->recover());
  }

  void TearDown() override {
    store_.reset();
    registry_.reset();
    TemporaryDirectoryTest::TearDown();
  }

  // Builds `spec` into an OCI layout, pushes it as `format`, pulls it.
  actors::Future<ImageInfo> pushAndGet(const ImageSpec& spec, const std::string& repoTag, const std::string& format) {
    OciLayout layout(sandbox() / ("layout-" + format + std::to_string(++n_)));
    layout.tag(layout.addImage(spec), "t");
    auto pushed = registry_->push("oci:" + layout.dir().string() + ":t", repoTag, format);
    EXPECT_EQ(0, pushed.status) << pushed.output;
    messages::Image image;
    image.set_type(messages::Image::DOCKER);
    *image.mutable_reference() = *fetcher::parseImageReference(registry_->hostPort() + "/" + repoTag);
    return store_->get(image);
  }

  static void expectSampleLayers(const ImageInfo& info) {
    ASSERT_EQ(2u, info.layers.size());
    const fs::path base = info.layers[0], top = info.layers[1];
    EXPECT_EQ(std::string(200'000, 'B'), testing::readFile(base / "bin/busybox"));
    struct stat a {
    }, b{};
    ASSERT_EQ(0, ::lstat((base / "bin/busybox").c_str(), &a));
    ASSERT_EQ(0, ::lstat((base / "bin/ls").c_str(), &b));
    EXPECT_EQ(a.st_ino, b.st_ino) << "the hardlink is a hardlink";
    EXPECT_EQ(0755u, a.st_mode & 07777);
    struct stat wh {};
    ASSERT_EQ(0, ::lstat((top / "etc/old").c_str(), &wh));
    EXPECT_TRUE(S_ISCHR(wh.st_mode) && wh.st_rdev == makedev(0, 0)) << "a whiteout in overlay form";
    char value[4] = {};
    EXPECT_EQ(1, ::lgetxattr((top / "var/cache").c_str(), "trusted.overlay.opaque", value, sizeof(value)));
    EXPECT_EQ("fresh", testing::readFile(top / "var/cache/fresh"));
    EXPECT_EQ("busybox", fs::read_symlink(top / "bin/sh").string());
    EXPECT_EQ(std::vector<std::string>{"/bin/sh"}, testing::strings(info.image.config().cmd()));
  }

  // A store whose registry `mirrored` (host:port) has `mirror` in front;
  // blob bytes go on in chunks of `chunkBytes`.
  std::unique_ptr<ImageStore> mirroredStore(const std::string& mirrored, const testing::FakeRegistry& mirror,
                                            std::size_t chunkBytes) {
    fetcher::RegistryOptions o;
    o.http.chunkBytes = chunkBytes;
    o.mirrored = mirrored;
    o.mirrors = {mirror.url()};
    o.retry = fetcher::RetryPolicy{.maxAttempts = 3,
                                   .initialDelay = std::chrono::milliseconds(1),
                                   .maxDelay = std::chrono::milliseconds(5),
                                   .multiplier = 2.0,
                                   .jitter = 0.1};
    auto puller = fetcher::RegistryPuller::create(runtime_, o, 4);
    EXPECT_TRUE(puller.isSome());
    std::shared_ptr<fetcher::Puller> shared(std::move(*puller));
    ImageStoreOptions options;
    options.storeDir = (sandbox() / ("mirrored-store" + std::to_string(++n_))).string();
    auto store = ImageStore::create(runtime_, options, [shared](const messages::Image&) { return shared; });
    EXPECT_TRUE(store.isSome());
    auto recovered = (*store)->recover();
    EXPECT_TRUE(recovered.waitFor(std::chrono::seconds(15)) && recovered.isReady());
    return std::move(*store);
  }

  // Makes `mirror` lie about every layer blob of `layers`: a tar prefix of
  // its own entry (compressed as the layer is), zero-padded to the blob's
  // size, that breaks off after the prefix on every attempt, Range or not.
  // Returns the prefix's size: as the chunk size, the whole prefix goes on
  // before the break, as it would from a mirror sending more.
  static std::size_t lieAboutLayers(testing::FakeRegistry& mirror,
                                    const std::vector<std::pair<std::string, std::size_t>>& layers,
                                    TarCompression compression) {
    const std::string prefix = testing::makeTarPrefix({TarEntry::file("from-the-mirror", "spliced")}, compression);
    std::vector<std::string> digests;
    for (const auto& [digest, size] : layers) {
      EXPECT_LT(prefix.size(), size);
      std::string lie = prefix;
      lie.resize(size, '\0');
      mirror.putBlob(digest, lie);
      digests.push_back(digest.substr(7));
    }
    mirror.dropBlobsAfter(prefix.size(), 1000, digests);
    mirror.ignoreRange();
    return prefix.size();
  }

  static void expectNoMirrorEntry(const ImageInfo& info) {
    for (const auto& layer : info.layers) {
      EXPECT_FALSE(fs::exists(fs::path(layer) / "from-the-mirror")) << layer;
    }
  }

  actors::Runtime runtime_;
  std::unique_ptr<ImageStore> store_;
  int n_ = 0;
};

TEST_F(StoreIntegrationTest, DockerSchema2GzipPushedBySkopeo) {
  auto info = pushAndGet(sampleImage(TarCompression::Gzip), "test/v2s2:latest", "v2s2");
  AWAIT_READY(info);
  expectSampleLayers(info.get());
}

TEST_F(StoreIntegrationTest, OciGzipAndZstdPushedBySkopeo) {
  auto gzip = pushAndGet(sampleImage(TarCompression::Gzip), "test/oci:gzip", "oci");
  AWAIT_READY(gzip);
  expectSampleLayers(gzip.get());
  auto zstd = pushAndGet(sampleImage(TarCompression::Zstd), "test/oci:zstd", "oci");
  AWAIT_READY(zstd);
  expectSampleLayers(zstd.get());
  // The same trees: the same diffIDs, so the same chain ids and one copy on disk.
  EXPECT_EQ(gzip->layers, zstd->layers);
}

// A lying mirror (the fake registry) in front of the real registry: it has
// the image's manifest and config, but answers each layer blob with a tar
// prefix of its own entry that breaks off, and every retry the same way. A
// source that sent bytes is never followed by another in the same stream:
// the layer starts over from nothing at the registry, and what is stored is
// the registry's layer exactly. Uncompressed layers (whose diffID is their
// digest, so not hashed twice) most of all.
// Signed schema 1 as a real registry serves it: Debian's docker-registry
// with schema 1 enabled, images pushed by skopeo as v2s1 (signed with an
// ephemeral key, signed again by the registry on every GET). The digest is
// the JWS payload's; by tag and by that digest, each layer equals the one
// of the same image pushed as v2s2.
TEST_F(StoreIntegrationTest, SignedSchema1PushedBySkopeoEqualsItsSchema2Twin) {
  std::string error;
  auto schema1 = RealRegistry::start(sandbox() / "schema1-registry", {.schema1 = true}, error);
  ASSERT_NE(nullptr, schema1) << error;
  ImageSpec one;
  one.architecture = fetcher::hostPlatform().architecture();
  one.layers = {{TarEntry::directory("etc"), TarEntry::file("etc/hello", "hello\n", 0640)}};
  one.cmd = {"/bin/sh"};
  int n = 0;
  ImageSpec two = sampleImage(TarCompression::Gzip);  // whiteouts, an opaque dir, a hardlink
  one.history = two.history = true;
  for (const ImageSpec& spec : {one, two}) {
    OciLayout layout(sandbox() / ("layout-s1-" + std::to_string(++n)));
    layout.tag(layout.addImage(spec), "t");
    const std::string tag = std::to_string(n);
    for (const std::string format : {"v2s1", "v2s2"}) {
      auto pushed = schema1->push("oci:" + layout.dir().string() + ":t", "test/" + format + ":" + tag, format);
      ASSERT_EQ(0, pushed.status) << pushed.output;
    }
    auto get = [&](const std::string& name) {
      messages::Image image;
      image.set_type(messages::Image::DOCKER);
      *image.mutable_reference() = *fetcher::parseImageReference(schema1->hostPort() + "/" + name);
      return store_->get(image);
    };
    actors::Future<ImageInfo> signed1 = get("test/v2s1:" + tag), twin = get("test/v2s2:" + tag);
    AWAIT_READY(signed1);
    AWAIT_READY(twin);
    EXPECT_EQ("", signed1->configPath) << "schema 1 carries its config in the manifest";
    ASSERT_EQ(twin->layers.size(), signed1->layers.size());
    for (std::size_t i = 0; i < twin->layers.size(); ++i) {
      EXPECT_EQ(testing::treeOf(twin->layers[i]), testing::treeOf(signed1->layers[i])) << "layer " << i;
    }
    EXPECT_EQ(std::vector<std::string>{"/bin/sh"}, testing::strings(signed1->image.config().cmd()));
    // By the digest the registry names: the payload's.
    const std::string digest = signed1->image.manifest_digest();
    auto raw = testing::runCommand({"curl", "-fsS", "-o", "/dev/null", "-w", "%header{docker-content-digest}",
                                    "http://" + schema1->hostPort() + "/v2/test/v2s1/manifests/" + tag});
    EXPECT_EQ(digest, raw.output);
    actors::Future<ImageInfo> byDigest = get("test/v2s1@" + digest);
    AWAIT_READY(byDigest);
    EXPECT_EQ(signed1->layers, byDigest->layers);
  }
}

TEST_F(StoreIntegrationTest, ALyingMirrorNeverSplicesItsBytesIntoALayer) {
  const std::vector<std::pair<TarCompression, std::string>> kinds = {
      {TarCompression::None, "none"}, {TarCompression::Gzip, "gzip"}, {TarCompression::Zstd, "zstd"}};
  for (const auto& [compression, name] : kinds) {
    SCOPED_TRACE(name);
    ImageSpec spec = sampleImage(compression);
    for (auto& layer : spec.layers) layer.push_back(TarEntry::file("compression", name));  // new layers each time
    OciLayout layout(sandbox() / ("lie-" + name));
    const testing::BuiltImage built = layout.addImage(spec);
    layout.tag(built, "t");
    const std::string repo = "test/lie-" + name;
    // As built: the mirror serves these very bytes.
    auto pushed = registry_->push("oci:" + layout.dir().string() + ":t", repo + ":t", "oci", false,
                                  {"--preserve-digests"});
    ASSERT_EQ(0, pushed.status) << pushed.output;

    testing::FakeRegistry mirror;
    mirror.putManifest(repo, "t", built.manifestJson, fetcher::mediatype::kOciManifest);
    mirror.putBlob(built.configDigest, built.configJson);
    std::vector<std::pair<std::string, std::size_t>> layers;
    for (std::size_t i = 0; i < built.layerDigests.size(); ++i)
      layers.emplace_back(built.layerDigests[i], built.layerBlobs[i].size());
    const std::size_t chunk = lieAboutLayers(mirror, layers, compression);

    auto store = mirroredStore(registry_->hostPort(), mirror, chunk);
    messages::Image image;
    image.set_type(messages::Image::DOCKER);
    *image.mutable_reference() = *fetcher::parseImageReference(registry_->hostPort() + "/" + repo + ":t");
    auto info = store->get(image);
    AWAIT_READY(info);
    for (const auto& [digest, size] : layers) EXPECT_LE(1u, mirror.count(digest.substr(7))) << "the mirror was asked";
    expectSampleLayers(info.get());
    expectNoMirrorEntry(info.get());
    EXPECT_EQ(name, testing::readFile(fs::path(info->layers[1]) / "compression"));
    EXPECT_TRUE(fs::is_empty(fs::path(sandbox() / ("mirrored-store" + std::to_string(n_)) / "staging")));
  }
}

// Schema 1 has no sizes and no diffIDs: nothing but the blob digest guards a
// layer, so a spliced stream would be taken whole. The fake registry is the
// upstream here (the real one no longer takes schema 1 pushes).
TEST_F(StoreIntegrationTest, ALyingMirrorNeverSplicesItsBytesIntoASchema1Layer) {
  testing::FakeRegistry upstream, mirror;
  const std::string blob = testing::makeTar(
      {TarEntry::directory("etc"), TarEntry::file("etc/upstream", std::string(50'000, 'u'))}, TarCompression::Gzip);
  const std::string digest = upstream.addBlob(blob);
  const std::string id(64, 'a');
  const std::string v1 = R"({\"id\":\")" + id + R"(\",\"architecture\":\")" + fetcher::hostPlatform().architecture() +
                         R"(\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"sh\"]}})";
  const std::string manifest = R"({"schemaVersion":1,"name":"test/old","tag":"v1","architecture":")" +
                               fetcher::hostPlatform().architecture() + R"(","fsLayers":[{"blobSum":")" + digest +
                               R"("}],"history":[{"v1Compatibility":")" + v1 + R"("}]})";
  upstream.putManifest("test/old", "v1", manifest, fetcher::mediatype::kDockerSchema1);
  mirror.putManifest("test/old", "v1", manifest, fetcher::mediatype::kDockerSchema1);
  const std::size_t chunk = lieAboutLayers(mirror, {{digest, blob.size()}}, TarCompression::Gzip);

  auto store = mirroredStore(upstream.hostPort(), mirror, chunk);
  messages::Image image;
  image.set_type(messages::Image::DOCKER);
  *image.mutable_reference() = *fetcher::parseImageReference(upstream.hostPort() + "/test/old:v1");
  auto info = store->get(image);
  AWAIT_READY(info);
  EXPECT_LE(1u, mirror.count(digest.substr(7)));
  EXPECT_LE(1u, upstream.count(digest.substr(7)));
  ASSERT_EQ(1u, info->layers.size());
  EXPECT_EQ(std::string(50'000, 'u'), testing::readFile(fs::path(info->layers[0]) / "etc/upstream"));
  expectNoMirrorEntry(info.get());
}

// The local sources through the same store: an OCI layout directory, a
// docker-archive written by skopeo, and Mesos's legacy `docker save` layout
// in a directory of tarballs; each verified as a registry pull is.
TEST_F(StoreIntegrationTest, LocalSourcesOciLayoutDockerArchiveAndTarballDirectory) {
  auto oci = fetcher::OciLayoutPuller::create(runtime_);
  ASSERT_TRUE(oci.isSome());
  std::shared_ptr<fetcher::Puller> ociPuller(std::move(*oci));
  const fs::path tarballs = sandbox() / "tarballs";
  fs::create_directories(tarballs);
  auto archive = fetcher::DockerArchivePuller::create(runtime_, tarballs.string());
  ASSERT_TRUE(archive.isSome());
  std::shared_ptr<fetcher::Puller> archivePuller(std::move(*archive));
  ImageStoreOptions options;
  options.storeDir = (sandbox() / "local-store").string();
  auto created = ImageStore::create(runtime_, options, [&](const messages::Image& image) {
    return image.type() == messages::Image::OCI_LAYOUT ? ociPuller : archivePuller;
  });
  ASSERT_TRUE(created.isSome()) << created.error().message;
  std::unique_ptr<ImageStore> local = std::move(*created);
  AWAIT_READY(local->recover());

  OciLayout layout(sandbox() / "layout");
  layout.tag(layout.addImage(sampleImage(TarCompression::Gzip)), "v1");
  messages::Image ociImage;
  ociImage.set_type(messages::Image::OCI_LAYOUT);
  ociImage.set_path(layout.dir().string());
  ociImage.set_layout_tag("v1");
  auto fromLayout = local->get(ociImage);
  AWAIT_READY(fromLayout);
  expectSampleLayers(fromLayout.get());

  const fs::path file = sandbox() / "image.tar";
  auto saved = testing::runCommand({"skopeo", "copy", "-q", "oci:" + layout.dir().string() + ":v1",
                                    "docker-archive:" + file.string() + ":test/app:v1"});
  ASSERT_EQ(0, saved.status) << saved.output;
  messages::Image archiveImage;
  archiveImage.set_type(messages::Image::DOCKER_ARCHIVE);
  archiveImage.set_path(file.string());
  auto fromArchive = local->get(archiveImage);
  AWAIT_READY(fromArchive);
  expectSampleLayers(fromArchive.get());
  EXPECT_EQ(fromLayout->layers, fromArchive->layers) << "the same layers, stored once";

  // Mesos's fixture: repositories {"abc":{"latest":"456"}}, layers 123 <- 456.
  const std::string base = testing::makeTar({TarEntry::file("temp", "foo 123")}, TarCompression::None);
  const std::string top = testing::makeTar({TarEntry::file("temp", "foo 456")}, TarCompression::None);
  testing::writeLegacyDockerSave(tarballs / "abc.tar", R"({"abc":{"latest":"456"}})",
                                 {{"123", R"({"id":"123","parent":""})", base},
                                  {"456", R"({"id":"456","parent":"123","config":{"Cmd":["sh"]}})", top}});
  messages::Image legacy;
  legacy.set_type(messages::Image::DOCKER);
  *legacy.mutable_reference() = *fetcher::parseImageReference("abc");
  auto fromTarball = local->get(legacy);
  AWAIT_READY(fromTarball);
  ASSERT_EQ(2u, fromTarball->layers.size());
  EXPECT_EQ("foo 123", testing::readFile(fs::path(fromTarball->layers[0]) / "temp"));
  EXPECT_EQ("foo 456", testing::readFile(fs::path(fromTarball->layers[1]) / "temp"));

  // A corrupted local blob fails like a registry one, and stores nothing new.
  const auto layers = fs::directory_iterator(sandbox() / "local-store/layers");
  const std::size_t before = static_cast<std::size_t>(std::distance(fs::begin(layers), fs::end(layers)));
  OciLayout bad(sandbox() / "bad");
  ImageSpec other = sampleImage(TarCompression::Zstd);
  other.layers[1].push_back(TarEntry::file("only/here", "new"));  // not stored yet
  auto built = bad.addImage(other);
  bad.tag(built, "v1");
  testing::writeFile(bad.dir() / "blobs/sha256" / built.layerDigests[1].substr(7), "not the layer");
  ociImage.set_path(bad.dir().string());
  auto corrupt = local->get(ociImage);
  AWAIT_FAILED(corrupt);
  // The bytes stop decompressing before their digest can be checked.
  EXPECT_TRUE(corrupt.failure().kind == ErrorKind::DigestMismatch || corrupt.failure().kind == ErrorKind::Corruption)
      << corrupt.failure().message;
  EXPECT_NE(std::string::npos, corrupt.failure().message.find(built.layerDigests[1])) << corrupt.failure().message;
  const auto after = fs::directory_iterator(sandbox() / "local-store/layers");
  EXPECT_LE(static_cast<std::size_t>(std::distance(fs::begin(after), fs::end(after))), before + 1)
      << "at most the good base layer is added";
  EXPECT_TRUE(fs::is_empty(sandbox() / "local-store/staging"));
}

}  // namespace
}  // namespace prov::store
