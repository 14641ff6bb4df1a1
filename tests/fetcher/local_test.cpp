// The local pullers: OCI image layouts (built here, and copied by skopeo)
// and `docker save` archives (written by skopeo, in Mesos's legacy layout,
// and crafted), resolved and streamed, and every way they can be broken.

#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/local/archive.hpp"
#include "fetcher/local/local.hpp"
#include "fetcher/manifest.hpp"
#include "fetcher/reference.hpp"
#include "testkit/files.hpp"
#include "testkit/image_builder.hpp"
#include "testkit/real_registry.hpp"
#include "tests/support/await.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::fetcher {
namespace {

namespace fs = std::filesystem;
using actors::Future;
using actors::Promise;
using testing::BuiltImage;
using testing::ImageSpec;
using testing::OciLayout;
using testing::SavedImage;
using testing::savedImage;
using testing::TarCompression;
using testing::TarEntry;
using testing::writeSave;

// Keeps what it gets; checks that writes never overlap.
class CollectSink : public ByteSink {
 public:
  explicit CollectSink(actors::Runtime* slow = nullptr) : slow_(slow) {}
  Future<Nothing> write(std::string_view chunk) override {
    std::lock_guard lock(mutex_);
    if (busy_) overlapped_ = true;
    data_.append(chunk);
    largest_ = std::max(largest_, chunk.size());
    ++writes_;
    if (slow_ == nullptr) return Nothing{};
    busy_ = true;
    // A consumer that takes its time, on another thread.
    return actors::async(*slow_, [this] {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      std::lock_guard lock(mutex_);
      busy_ = false;
    });
  }
  std::string data() const {
    std::lock_guard lock(mutex_);
    return data_;
  }
  std::size_t largest() const {
    std::lock_guard lock(mutex_);
    return largest_;
  }
  int writes() const {
    std::lock_guard lock(mutex_);
    return writes_;
  }
  bool overlapped() const {
    std::lock_guard lock(mutex_);
    return overlapped_;
  }

 private:
  actors::Runtime* slow_;
  mutable std::mutex mutex_;
  std::string data_;
  std::size_t largest_ = 0;
  int writes_ = 0;
  bool busy_ = false;
  bool overlapped_ = false;
};

// Never completes a write.
class StuckSink : public ByteSink {
 public:
  Future<Nothing> write(std::string_view) override { return promise_.future(); }
  Promise<Nothing> promise_;
};

::testing::AssertionResult mentions(const Future<messages::ResolvedImage>& f, const std::string& text) {
  if (!f.isFailed()) return ::testing::AssertionFailure() << "not failed";
  if (f.failure().message.find(text) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << f.failure().message << "' does not mention '" << text << "'";
}
::testing::AssertionResult mentions(const Future<Nothing>& f, const std::string& text) {
  if (!f.isFailed()) return ::testing::AssertionFailure() << "not failed";
  if (f.failure().message.find(text) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << f.failure().message << "' does not mention '" << text << "'";
}

ImageSpec smallImage(const std::string& marker, TarCompression compression = TarCompression::Gzip,
                     const std::string& architecture = "amd64") {
  ImageSpec spec;
  spec.architecture = architecture;
  spec.compression = compression;
  spec.layers = {
      {TarEntry::directory("bin"), TarEntry::file("bin/hello", "#!/bin/sh\necho " + marker + "\n", 0755)},
      {TarEntry::directory("etc"), TarEntry::file("etc/marker", marker + "\n")},
  };
  spec.env = {"PATH=/bin", "MARKER=" + marker};
  spec.cmd = {"/bin/hello"};
  return spec;
}

std::vector<std::string> diffIdsOf(const messages::ResolvedImage& resolved) {
  return {resolved.config().diff_ids().begin(), resolved.config().diff_ids().end()};
}

void overwrite(const fs::path& file, const std::string& content) {
  fs::permissions(file, fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << content;
}

std::string blobFile(const OciLayout& layout, const std::string& digest) {
  return (layout.dir() / "blobs" / "sha256" / digest.substr(7)).string();
}

class LocalTest : public testing::TemporaryDirectoryTest {
 protected:
  // Fetches every layer and the config; each must be what was built (when
  // `layerBlobs` says) and hash to its digest.
  void fetchAll(Puller& puller, const messages::Image& image, const messages::ResolvedImage& resolved,
                const std::vector<std::string>& layerBlobs = {}) {
    if (!layerBlobs.empty()) {
      ASSERT_EQ(static_cast<int>(layerBlobs.size()), resolved.manifest().layers_size());
    }
    for (int i = 0; i < resolved.manifest().layers_size(); ++i) {
      const auto& layer = resolved.manifest().layers(i);
      auto sink = std::make_shared<CollectSink>();
      AWAIT_READY(puller.fetchBlob(image, resolved, layer, sink));
      EXPECT_EQ(layer.digest(), sha256Digest(sink->data())) << "layer " << i;
      EXPECT_EQ(layer.size(), static_cast<std::int64_t>(sink->data().size())) << "layer " << i;
      if (!layerBlobs.empty()) {
        EXPECT_TRUE(layerBlobs[i] == sink->data()) << "layer " << i;
      }
    }
    auto sink = std::make_shared<CollectSink>();
    AWAIT_READY(puller.fetchBlob(image, resolved, resolved.manifest().config(), sink));
    EXPECT_EQ(resolved.config_json(), sink->data());
  }

  actors::Runtime runtime_;
};

// ---------------------------------------------------------------- OCI layout

class LocalOciTest : public LocalTest {
 protected:
  void SetUp() override {
    LocalTest::SetUp();
    puller_ = std::move(*OciLayoutPuller::create(runtime_));
  }

  messages::Image image(const fs::path& dir, const std::string& tag = "") {
    messages::Image image;
    image.set_type(messages::Image::OCI_LAYOUT);
    image.set_path(dir.string());
    image.set_layout_tag(tag);
    return image;
  }

  Future<messages::ResolvedImage> resolve(const messages::Image& image) {
    return puller_->resolve(image, hostPlatform());
  }

  std::unique_ptr<OciLayoutPuller> puller_;
};

TEST_F(LocalOciTest, ResolvesByTagAndFetchesEveryLayer) {
  OciLayout layout(sandbox() / "layout");
  const BuiltImage built = layout.addImage(smallImage("oci"));
  layout.tag(built, "v1");
  Future<messages::ResolvedImage> resolved = resolve(image(layout.dir(), "v1"));
  AWAIT_READY(resolved);
  EXPECT_EQ(built.manifestDigest, resolved->manifest_digest());
  EXPECT_EQ("", resolved->index_digest());
  EXPECT_EQ(messages::Manifest::OCI, resolved->manifest().kind());
  EXPECT_EQ(built.configJson, resolved->config_json());
  EXPECT_EQ(built.diffIds, diffIdsOf(resolved.get()));
  EXPECT_EQ("MARKER=oci", resolved->config().env(1));
  EXPECT_EQ("oci:" + layout.dir().string(), resolved->endpoint());
  EXPECT_EQ(layout.dir().string(), resolved->reference().repository());
  EXPECT_EQ("v1", resolved->reference().tag());
  for (int i = 0; i < resolved->manifest().layers_size(); ++i) {
    const auto& layer = resolved->manifest().layers(i);
    EXPECT_EQ(built.layerDigests[i], layer.digest());
    EXPECT_EQ(static_cast<std::int64_t>(built.layerBlobs[i].size()), layer.size());
    EXPECT_EQ(Compression::Gzip, *layerCompression(layer.media_type()));
  }
  fetchAll(*puller_, image(layout.dir(), "v1"), resolved.get(), built.layerBlobs);
}

TEST_F(LocalOciTest, NoTagTakesTheOnlyImage) {
  OciLayout layout(sandbox() / "layout");
  const BuiltImage built = layout.addImage(smallImage("only", TarCompression::Zstd));
  layout.tag(built, "latest");
  Future<messages::ResolvedImage> resolved = resolve(image(layout.dir()));
  AWAIT_READY(resolved);
  EXPECT_EQ(built.manifestDigest, resolved->manifest_digest());
  EXPECT_EQ("latest", resolved->reference().tag());
  fetchAll(*puller_, image(layout.dir()), resolved.get(), built.layerBlobs);
}

TEST_F(LocalOciTest, MultiPlatformIndexGivesTheHostPlatform) {
  OciLayout layout(sandbox() / "layout");
  const ImageSpec amdSpec = smallImage("amd", TarCompression::None, "amd64");
  ImageSpec armSpec = smallImage("arm", TarCompression::None, "arm64");
  armSpec.variant = "v8";
  const BuiltImage amd = layout.addImage(amdSpec);
  const BuiltImage arm = layout.addImage(armSpec);
  const std::string indexDigest = layout.tagIndex({{amd, amdSpec}, {arm, armSpec}}, "multi");

  const bool hostIsArm = hostPlatform().architecture() == "arm64";
  Future<messages::ResolvedImage> host = resolve(image(layout.dir(), "multi"));
  AWAIT_READY(host);
  EXPECT_EQ(indexDigest, host->index_digest());
  EXPECT_EQ(hostIsArm ? arm.manifestDigest : amd.manifestDigest, host->manifest_digest());
  fetchAll(*puller_, image(layout.dir(), "multi"), host.get(), hostIsArm ? arm.layerBlobs : amd.layerBlobs);

  messages::Platform other;
  other.set_os("linux");
  other.set_architecture(hostIsArm ? "amd64" : "arm64");
  Future<messages::ResolvedImage> second = puller_->resolve(image(layout.dir(), "multi"), other);
  AWAIT_READY(second);
  EXPECT_EQ(hostIsArm ? amd.manifestDigest : arm.manifestDigest, second->manifest_digest());
  EXPECT_EQ(hostIsArm ? "MARKER=amd" : "MARKER=arm", second->config().env(1));

  other.set_architecture("s390x");
  Future<messages::ResolvedImage> none = puller_->resolve(image(layout.dir(), "multi"), other);
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, none);
  EXPECT_TRUE(mentions(none, "linux/s390x"));
}

TEST_F(LocalOciTest, LayoutWrittenBySkopeoWithTwoTags) {
  OciLayout layout(sandbox() / "layout");
  const BuiltImage first = layout.addImage(smallImage("first"));
  layout.tag(first, "v1");
  const std::string copy = (sandbox() / "copy").string();
  auto copied = testing::runCommand({"skopeo", "copy", "oci:" + layout.dir().string() + ":v1", "oci:" + copy + ":one"});
  ASSERT_EQ(0, copied.status) << copied.output;
  OciLayout second(sandbox() / "second");
  const BuiltImage other = second.addImage(smallImage("second", TarCompression::None));
  second.tag(other, "v2");
  copied = testing::runCommand({"skopeo", "copy", "oci:" + second.dir().string() + ":v2", "oci:" + copy + ":two"});
  ASSERT_EQ(0, copied.status) << copied.output;

  Future<messages::ResolvedImage> two = resolve(image(copy, "two"));
  AWAIT_READY(two);
  EXPECT_EQ("MARKER=second", two->config().env(1));
  EXPECT_EQ(other.diffIds, diffIdsOf(two.get()));
  fetchAll(*puller_, image(copy, "two"), two.get());  // skopeo compressed the layers

  Future<messages::ResolvedImage> one = resolve(image(copy, "one"));
  AWAIT_READY(one);
  EXPECT_EQ(first.diffIds, diffIdsOf(one.get()));

  Future<messages::ResolvedImage> untagged = resolve(image(copy));
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, untagged);
  EXPECT_TRUE(mentions(untagged, "one, two"));
}

TEST_F(LocalOciTest, StreamsInChunksWithBackPressure) {
  OciLayout layout(sandbox() / "layout");
  ImageSpec spec = smallImage("big", TarCompression::None);
  std::string big(3 * kLocalChunkBytes + 12345, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) >> 5);
  spec.layers.push_back({TarEntry::file("big", big)});
  const BuiltImage built = layout.addImage(spec);
  layout.tag(built, "v1");
  Future<messages::ResolvedImage> resolved = resolve(image(layout.dir(), "v1"));
  AWAIT_READY(resolved);
  auto sink = std::make_shared<CollectSink>(&runtime_);
  AWAIT_READY(puller_->fetchBlob(image(layout.dir(), "v1"), resolved.get(), resolved->manifest().layers(2), sink));
  EXPECT_TRUE(built.layerBlobs[2] == sink->data());
  EXPECT_EQ(kLocalChunkBytes, sink->largest());
  EXPECT_GE(sink->writes(), 4);
  EXPECT_FALSE(sink->overlapped());

  // A discard stops a fetch whose sink does not take the bytes.
  auto stuck = std::make_shared<StuckSink>();
  Future<Nothing> fetch = puller_->fetchBlob(image(layout.dir(), "v1"), resolved.get(), resolved->manifest().layers(2),
                                             stuck);
  fetch.discard();
  AWAIT_DISCARDED(fetch);
}

TEST_F(LocalOciTest, MissingLayoutNotALayoutAndUnknownTag) {
  const fs::path missing = sandbox() / "nope";
  Future<messages::ResolvedImage> f = resolve(image(missing, "v1"));
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, f);
  EXPECT_TRUE(mentions(f, missing.string()));

  testing::makeDirectory(sandbox() / "plain");
  f = resolve(image(sandbox() / "plain"));
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, f);
  EXPECT_TRUE(mentions(f, "oci-layout"));

  OciLayout layout(sandbox() / "layout");
  layout.tag(layout.addImage(smallImage("x")), "v1");
  f = resolve(image(layout.dir(), "v2"));
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, f);
  EXPECT_TRUE(mentions(f, "'v2'"));
  EXPECT_TRUE(mentions(f, "it has: v1"));

  messages::Image wrong = image(layout.dir(), "v1");
  wrong.set_type(messages::Image::DOCKER_ARCHIVE);
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, resolve(wrong));
}

TEST_F(LocalOciTest, MalformedIndexJsonAndUnknownMediaType) {
  OciLayout layout(sandbox() / "layout");
  const BuiltImage built = layout.addImage(smallImage("x"));
  testing::writeFile(layout.dir() / "index.json", "{\"schemaVersion\":2,\"manifests\":[");
  Future<messages::ResolvedImage> f = resolve(image(layout.dir()));
  AWAIT_EXPECT_ERROR(ErrorKind::Corruption, f);
  EXPECT_TRUE(mentions(f, "index.json"));

  testing::writeFile(layout.dir() / "index.json",
                     "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/x-unknown\",\"digest\":\"" +
                         built.manifestDigest + "\",\"size\":" + std::to_string(built.manifestJson.size()) + "}]}");
  f = resolve(image(layout.dir()));
  AWAIT_EXPECT_ERROR(ErrorKind::Unsupported, f);
  EXPECT_TRUE(mentions(f, "application/x-unknown"));
}

TEST_F(LocalOciTest, ChangedManifestOrConfigFailsResolve) {
  OciLayout layout(sandbox() / "layout");
  const BuiltImage built = layout.addImage(smallImage("x"));
  layout.tag(built, "v1");
  std::string manifest = built.manifestJson;
  manifest.back() = ' ';  // same size, other bytes
  overwrite(blobFile(layout, built.manifestDigest), manifest);
  Future<messages::ResolvedImage> f = resolve(image(layout.dir(), "v1"));
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, f);
  EXPECT_TRUE(mentions(f, built.manifestDigest.substr(7)));

  overwrite(blobFile(layout, built.manifestDigest), built.manifestJson);
  overwrite(blobFile(layout, built.configDigest), built.configJson + " ");
  f = resolve(image(layout.dir(), "v1"));
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, f);
  EXPECT_TRUE(mentions(f, built.configDigest.substr(7)));

  fs::remove(blobFile(layout, built.configDigest));
  f = resolve(image(layout.dir(), "v1"));
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, f);
  EXPECT_TRUE(mentions(f, built.configDigest.substr(7)));
}

TEST_F(LocalOciTest, CorruptedTruncatedAndMissingBlobsFailFetch) {
  OciLayout layout(sandbox() / "layout");
  const BuiltImage built = layout.addImage(smallImage("x"));
  layout.tag(built, "v1");
  Future<messages::ResolvedImage> resolved = resolve(image(layout.dir(), "v1"));
  AWAIT_READY(resolved);
  const auto& layer = resolved->manifest().layers(1);
  const std::string file = blobFile(layout, layer.digest());

  std::string changed = built.layerBlobs[1];
  changed[changed.size() / 2] ^= 0x55;
  overwrite(file, changed);
  Future<Nothing> f = puller_->fetchBlob(image(layout.dir(), "v1"), resolved.get(), layer,
                                         std::make_shared<CollectSink>());
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, f);
  EXPECT_TRUE(mentions(f, layer.digest()));

  overwrite(file, built.layerBlobs[1].substr(0, built.layerBlobs[1].size() - 10));
  f = puller_->fetchBlob(image(layout.dir(), "v1"), resolved.get(), layer, std::make_shared<CollectSink>());
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, f);
  EXPECT_TRUE(mentions(f, "bytes"));

  overwrite(file, built.layerBlobs[1] + "extra");
  f = puller_->fetchBlob(image(layout.dir(), "v1"), resolved.get(), layer, std::make_shared<CollectSink>());
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, f);

  fs::remove(file);
  f = puller_->fetchBlob(image(layout.dir(), "v1"), resolved.get(), layer, std::make_shared<CollectSink>());
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, f);
  EXPECT_TRUE(mentions(f, file));

  messages::Descriptor bad = layer;
  bad.set_digest("sha256:../../../etc/passwd");
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, puller_->fetchBlob(image(layout.dir(), "v1"), resolved.get(), bad,
                                                                    std::make_shared<CollectSink>()));
}

// ------------------------------------------------------------ docker save

// Mesos's ProvisionerDockerLocalStoreTest fixture: abc:latest = 456 on 123.
std::vector<testing::LegacyLayer> mesosLayers(TarCompression compression = TarCompression::None) {
  return {
      {"123", R"({"parent":""})", testing::makeTar({TarEntry::file("temp", "foo 123")}, compression)},
      {"456",
       R"({"id":"456","parent":"123","architecture":"amd64","os":"linux","config":{"Env":["A=1"],)"
       R"("Entrypoint":["/e"],"Cmd":["sh"],"WorkingDir":"/w","User":"u"}})",
       testing::makeTar({TarEntry::file("temp", "bar 456")}, compression)},
  };
}

class DockerArchiveTest : public LocalTest {
 protected:
  void SetUp() override {
    LocalTest::SetUp();
    puller_ = std::move(*DockerArchivePuller::create(runtime_, (sandbox() / "images").string()));
  }

  static messages::Image archive(const fs::path& file, const std::string& reference = "") {
    messages::Image image;
    image.set_type(messages::Image::DOCKER_ARCHIVE);
    image.set_path(file.string());
    if (!reference.empty()) *image.mutable_reference() = *parseImageReference(reference);
    return image;
  }
  static messages::Image docker(const std::string& reference) {
    messages::Image image;
    image.set_type(messages::Image::DOCKER);
    *image.mutable_reference() = *parseImageReference(reference);
    return image;
  }

  Future<messages::ResolvedImage> resolve(const messages::Image& image) {
    return puller_->resolve(image, hostPlatform());
  }

  // skopeo's docker-archive of a small image (gzip layers in the layout).
  BuiltImage skopeoArchive(const fs::path& file, const std::string& name, const std::string& marker) {
    OciLayout layout(sandbox() / ("layout-" + marker));
    const BuiltImage built = layout.addImage(smallImage(marker));
    layout.tag(built, "v1");
    fs::create_directories(file.parent_path());
    auto copied = testing::runCommand(
        {"skopeo", "copy", "oci:" + layout.dir().string() + ":v1", "docker-archive:" + file.string() + ":" + name});
    EXPECT_EQ(0, copied.status) << copied.output;
    return built;
  }

  std::unique_ptr<DockerArchivePuller> puller_;
};

TEST_F(DockerArchiveTest, SkopeoArchiveResolvesAndStreamsEveryLayer) {
  const fs::path file = sandbox() / "bar.tar";
  const BuiltImage built = skopeoArchive(file, "foo/bar:v1", "skopeo");
  Future<messages::ResolvedImage> resolved = resolve(archive(file));
  AWAIT_READY(resolved);
  EXPECT_EQ("docker.io", resolved->reference().registry());
  EXPECT_EQ("foo/bar", resolved->reference().repository());
  EXPECT_EQ("v1", resolved->reference().tag());
  EXPECT_EQ("docker-archive:" + file.string(), resolved->endpoint());
  EXPECT_EQ(built.diffIds, diffIdsOf(resolved.get()));
  EXPECT_EQ("MARKER=skopeo", resolved->config().env(1));
  EXPECT_EQ(resolved->manifest().config().digest(), sha256Digest(resolved->config_json()));
  ASSERT_EQ(2, resolved->manifest().layers_size());
  for (int i = 0; i < 2; ++i) {
    const auto& layer = resolved->manifest().layers(i);
    EXPECT_EQ(mediatype::kOciLayer, layer.media_type());  // skopeo stores them uncompressed
    EXPECT_EQ(Compression::None, *layerCompression(layer.media_type()));
    EXPECT_EQ(built.diffIds[i], layer.digest());
    EXPECT_EQ(built.diffIds[i].substr(7) + ".tar", layer.annotations().at(kArchivePathAnnotation));
  }
  fetchAll(*puller_, archive(file), resolved.get());

  // The same archive, the same synthesized manifest; by tag or by name.
  Future<messages::ResolvedImage> again = resolve(archive(file, "foo/bar:v1"));
  AWAIT_READY(again);
  EXPECT_EQ(resolved->manifest_digest(), again->manifest_digest());
  messages::Image byTag = archive(file);
  byTag.mutable_reference()->set_tag("v1");
  AWAIT_EXPECT_READY(resolve(byTag));
  Future<messages::ResolvedImage> other = resolve(archive(file, "foo/bar:v2"));
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, other);
  EXPECT_TRUE(mentions(other, "docker.io/foo/bar:v1"));
}

TEST_F(DockerArchiveTest, LegacyLayoutOfSkopeoArchiveFollowsLinks) {
  // Without manifest.json only `repositories`, <id>/json and the
  // <id>/layer.tar -> ../<hex>.tar links skopeo writes are left.
  const fs::path file = sandbox() / "legacy.tar";
  const BuiltImage built = skopeoArchive(file, "foo/bar:v1", "links");
  testing::removeTarEntries(file, {"manifest.json"});
  Future<messages::ResolvedImage> resolved = resolve(archive(file));
  AWAIT_READY(resolved);
  EXPECT_EQ(built.diffIds, diffIdsOf(resolved.get()));
  EXPECT_EQ("MARKER=links", resolved->config().env(1));
  fetchAll(*puller_, archive(file), resolved.get());
}

TEST_F(DockerArchiveTest, MesosLegacyFixture) {
  const fs::path file = sandbox() / "images" / "abc.tar";
  fs::create_directories(file.parent_path());
  const auto layers = mesosLayers();
  testing::writeLegacyDockerSave(file, R"({"abc":{"latest":"456"}})", layers);
  for (const auto& image : {archive(file), docker("abc"), docker("abc:latest"), docker("docker.io/library/abc")}) {
    Future<messages::ResolvedImage> resolved = resolve(image);
    AWAIT_READY(resolved);
    ASSERT_EQ(2, resolved->manifest().layers_size());
    EXPECT_EQ(sha256Digest(layers[0].tar), resolved->manifest().layers(0).digest());  // base first
    EXPECT_EQ(sha256Digest(layers[1].tar), resolved->manifest().layers(1).digest());
    EXPECT_EQ("123/layer.tar", resolved->manifest().layers(0).annotations().at(kArchivePathAnnotation));
    EXPECT_EQ((std::vector<std::string>{sha256Digest(layers[0].tar), sha256Digest(layers[1].tar)}),
              diffIdsOf(resolved.get()));
    const auto& config = resolved->config();
    EXPECT_EQ(std::vector<std::string>{"A=1"}, testing::strings(config.env()));
    EXPECT_EQ("/e", config.entrypoint(0));
    EXPECT_EQ("sh", config.cmd(0));
    EXPECT_EQ("/w", config.working_dir());
    EXPECT_EQ("u", config.user());
    EXPECT_EQ("docker.io/library/abc:latest", toString(resolved->reference()));
    EXPECT_EQ(std::string::npos, resolved->config_json().find("\"parent\""));
    fetchAll(*puller_, image, resolved.get(), {layers[0].tar, layers[1].tar});
  }
}

TEST_F(DockerArchiveTest, LegacyCompressedLayerGetsItsOwnDigest) {
  const fs::path file = sandbox() / "gz.tar";
  const auto layers = mesosLayers(TarCompression::Gzip);
  testing::writeLegacyDockerSave(file, R"({"abc":{"latest":"456"}})", layers);
  Future<messages::ResolvedImage> resolved = resolve(archive(file));
  AWAIT_READY(resolved);
  const auto& layer = resolved->manifest().layers(1);
  EXPECT_EQ(mediatype::kOciLayerGzip, layer.media_type());
  EXPECT_EQ(sha256Digest(layers[1].tar), layer.digest());
  EXPECT_EQ(sha256Digest(testing::makeTar({TarEntry::file("temp", "bar 456")}, TarCompression::None)),
            resolved->config().diff_ids(1));
  fetchAll(*puller_, archive(file), resolved.get(), {layers[0].tar, layers[1].tar});
}

TEST_F(DockerArchiveTest, CompressedLayersAndSeveralImages) {
  const fs::path file = sandbox() / "two.tar";
  const SavedImage one = savedImage({"one:1"}, "one", {TarCompression::None});
  const SavedImage two = savedImage({"two:2", "registry.example.com:5000/x/two:2"}, "two",
                                    {TarCompression::Gzip, TarCompression::Zstd, TarCompression::None});
  writeSave(file, {one, two});

  Future<messages::ResolvedImage> untagged = resolve(archive(file));
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, untagged);
  EXPECT_TRUE(mentions(untagged, "one:1, two:2, registry.example.com:5000/x/two:2"));

  Future<messages::ResolvedImage> resolved = resolve(archive(file, "registry.example.com:5000/x/two:2"));
  AWAIT_READY(resolved);
  EXPECT_EQ("registry.example.com:5000/x/two:2", toString(resolved->reference()));
  ASSERT_EQ(3, resolved->manifest().layers_size());
  EXPECT_EQ(mediatype::kOciLayerGzip, resolved->manifest().layers(0).media_type());
  EXPECT_EQ(mediatype::kOciLayerZstd, resolved->manifest().layers(1).media_type());
  EXPECT_EQ(mediatype::kOciLayer, resolved->manifest().layers(2).media_type());
  EXPECT_EQ(sha256Digest(two.layerBlobs[0]), resolved->manifest().layers(0).digest());
  EXPECT_EQ(sha256Digest(two.layerBlobs[1]), resolved->manifest().layers(1).digest());
  EXPECT_EQ(two.diffIds[2], resolved->manifest().layers(2).digest());
  EXPECT_EQ(two.diffIds, diffIdsOf(resolved.get()));
  EXPECT_EQ(two.configJson, resolved->config_json());
  fetchAll(*puller_, archive(file, "registry.example.com:5000/x/two:2"), resolved.get(), two.layerBlobs);

  // A reference with only a tag picks by tag.
  messages::Image byTag = archive(file);
  byTag.mutable_reference()->set_tag("1");
  Future<messages::ResolvedImage> first = resolve(byTag);
  AWAIT_READY(first);
  EXPECT_EQ("MARKER=one", first->config().env(0));
}

TEST_F(DockerArchiveTest, CompressedArchiveAndDigestReference) {
  // `docker save | gzip` and `| zstd`.
  const SavedImage image = savedImage({"z:1"}, "z", {TarCompression::Gzip, TarCompression::None});
  for (auto compression : {TarCompression::Gzip, TarCompression::Zstd}) {
    const fs::path file = sandbox() / "save.tar.gz";
    writeSave(file, {image}, "", {}, compression);
    Future<messages::ResolvedImage> resolved = resolve(archive(file));
    AWAIT_READY(resolved);
    EXPECT_EQ(image.diffIds, diffIdsOf(resolved.get()));
    fetchAll(*puller_, archive(file), resolved.get(), image.layerBlobs);

    // A digest picks the image when it is its config's (Docker's image id)
    // or the synthesized manifest's.
    const std::string configDigest = resolved->manifest().config().digest();
    AWAIT_EXPECT_READY(resolve(archive(file, "z@" + configDigest)));
    AWAIT_EXPECT_READY(resolve(archive(file, "z@" + resolved->manifest_digest())));
    Future<messages::ResolvedImage> wrong = resolve(archive(file, "z@" + sha256Digest("x")));
    AWAIT_EXPECT_ERROR(ErrorKind::NotFound, wrong);
    EXPECT_TRUE(mentions(wrong, sha256Digest("x")));
  }
}

TEST_F(DockerArchiveTest, TarballDirectoryNamingRule) {
  const fs::path dir = sandbox() / "images";
  fs::create_directories(dir);
  testing::writeLegacyDockerSave(dir / "abc.tar", R"({"abc":{"latest":"456"}})", mesosLayers());
  testing::writeLegacyDockerSave(dir / "abc:v2.tar", R"({"abc":{"v2":"456"}})", mesosLayers());
  skopeoArchive(dir / "foo" / "bar.tar", "foo/bar:v1", "nested");
  // (skopeo takes no ':' in the path)
  writeSave(dir / "localhost:5000" / "baz.tar", {savedImage({"localhost:5000/baz:v1"}, "r", {TarCompression::None})});

  for (const char* name : {"abc", "abc:v2", "foo/bar:v1", "localhost:5000/baz:v1"}) {
    Future<messages::ResolvedImage> resolved = resolve(docker(name));
    AWAIT_READY(resolved) << name;
    fetchAll(*puller_, docker(name), resolved.get());
  }
  Future<messages::ResolvedImage> f = resolve(docker("abc:v2"));
  AWAIT_READY(f);
  EXPECT_EQ("docker-archive:" + (dir / "abc:v2.tar").string(), f->endpoint());

  f = resolve(docker("nope"));
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, f);
  EXPECT_TRUE(mentions(f, (dir / "nope:latest.tar").string()));
  EXPECT_TRUE(mentions(f, (dir / "nope.tar").string()));

  f = resolve(docker("abc:v9"));  // abc.tar is there, the tag is not
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, f);
  EXPECT_TRUE(mentions(f, "abc:latest"));

  auto plain = *DockerArchivePuller::create(runtime_);
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, plain->resolve(docker("abc"), hostPlatform()));
}

TEST_F(DockerArchiveTest, MissingNotATarAndMalformedManifestJson) {
  const fs::path missing = sandbox() / "missing.tar";
  Future<messages::ResolvedImage> f = resolve(archive(missing));
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, f);
  EXPECT_TRUE(mentions(f, missing.string()));

  const fs::path text = sandbox() / "text.tar";
  testing::writeFile(text, "hello, not a tar");
  f = resolve(archive(text));
  AWAIT_EXPECT_ERROR(ErrorKind::Corruption, f);
  EXPECT_TRUE(mentions(f, text.string()));

  const fs::path bad = sandbox() / "bad.tar";
  writeSave(bad, {savedImage({"a:1"}, "a", {TarCompression::None})}, "[{\"Config\": 12");
  f = resolve(archive(bad));
  AWAIT_EXPECT_ERROR(ErrorKind::Corruption, f);
  EXPECT_TRUE(mentions(f, "manifest.json"));

  const fs::path empty = sandbox() / "empty.tar";
  testing::writeFile(empty, testing::makeTar({TarEntry::file("VERSION", "1.0")}, TarCompression::None));
  f = resolve(archive(empty));
  AWAIT_EXPECT_ERROR(ErrorKind::Corruption, f);
  EXPECT_TRUE(mentions(f, "manifest.json"));
}

// The index of an archive is bounded: an archive of a million empty
// entries does not become a million map nodes.
TEST_F(DockerArchiveTest, AnArchiveOfTooManyEntriesIsRefused) {
  std::vector<TarEntry> entries;
  for (std::size_t i = 0; i <= local::kMaxArchiveEntries; ++i)
    entries.push_back(TarEntry::directory(std::to_string(i)));
  const fs::path crowded = sandbox() / "crowded.tar";
  testing::writeFile(crowded, testing::makeTar(entries, TarCompression::None));
  Future<messages::ResolvedImage> f = resolve(archive(crowded));
  AWAIT_EXPECT_ERROR(ErrorKind::ResourceExhausted, f);
  EXPECT_TRUE(mentions(f, crowded.string()));
  EXPECT_TRUE(mentions(f, "more than 10000 entries"));
}

TEST_F(DockerArchiveTest, PathsMustStayInsideTheArchive) {
  SavedImage image = savedImage({"a:1"}, "a", {TarCompression::None});
  for (const std::string layer : {"../outside/layer.tar", "/etc/passwd", "a/../../b"}) {
    const fs::path file = sandbox() / "escape.tar";
    SavedImage crafted = image;
    crafted.layerNames[0] = layer;
    writeSave(file, {image}, "[" + crafted.manifestItem() + "]");
    Future<messages::ResolvedImage> f = resolve(archive(file));
    AWAIT_EXPECT_ERROR(ErrorKind::Corruption, f);
    EXPECT_TRUE(mentions(f, layer)) << layer;
  }
  // A link that leaves the archive.
  const fs::path file = sandbox() / "link.tar";
  SavedImage linked = image;
  linked.layerNames[0] = "x/layer.tar";
  writeSave(file, {image}, "[" + linked.manifestItem() + "]",
            {TarEntry::symlink("x/layer.tar", "../../../etc/passwd")});
  Future<messages::ResolvedImage> f = resolve(archive(file));
  AWAIT_EXPECT_ERROR(ErrorKind::Corruption, f);
  EXPECT_TRUE(mentions(f, "outside the archive"));
}

TEST_F(DockerArchiveTest, ChangedLayerConfigAndMissingEntries) {
  // A layer whose bytes are not its diff_id: resolve trusts the config, the
  // fetch finds out.
  SavedImage image = savedImage({"a:1"}, "a", {TarCompression::None, TarCompression::None});
  SavedImage changed = image;
  changed.layerBlobs[1] = testing::makeTar({TarEntry::file("layer1", "A1")}, TarCompression::None);
  const fs::path file = sandbox() / "changed.tar";
  writeSave(file, {changed});
  Future<messages::ResolvedImage> resolved = resolve(archive(file));
  AWAIT_READY(resolved);
  const auto& layer = resolved->manifest().layers(1);
  Future<Nothing> fetched = puller_->fetchBlob(archive(file), resolved.get(), layer, std::make_shared<CollectSink>());
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, fetched);
  EXPECT_TRUE(mentions(fetched, layer.digest()));

  // A config whose name is not its digest.
  SavedImage renamed = image;
  renamed.configName = sha256Digest("other").substr(7) + ".json";
  writeSave(file, {renamed});
  Future<messages::ResolvedImage> f = resolve(archive(file));
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, f);
  EXPECT_TRUE(mentions(f, renamed.configName));

  // A layer manifest.json lists and the archive lacks.
  SavedImage lacking = image;
  lacking.layerNames.push_back("gone/layer.tar");
  writeSave(file, {image}, "[" + lacking.manifestItem() + "]");
  f = resolve(archive(file));
  AWAIT_EXPECT_ERROR(ErrorKind::Corruption, f);
  EXPECT_TRUE(mentions(f, "gone/layer.tar"));

  // Layers and diff_ids that do not pair up.
  SavedImage short1 = image;
  short1.layerNames.pop_back();
  writeSave(file, {image}, "[" + short1.manifestItem() + "]");
  f = resolve(archive(file));
  AWAIT_EXPECT_ERROR(ErrorKind::Corruption, f);
  EXPECT_TRUE(mentions(f, "diff_ids"));
}

TEST_F(DockerArchiveTest, TruncatedArchive) {
  const fs::path file = sandbox() / "cut.tar";
  skopeoArchive(file, "foo/bar:v1", "cut");
  const std::string whole = testing::readFile(file);
  testing::writeFile(file, whole.substr(0, whole.size() / 2 + 100));
  Future<messages::ResolvedImage> f = resolve(archive(file));
  AWAIT_EXPECT_ERROR(ErrorKind::Corruption, f);
  EXPECT_TRUE(mentions(f, file.string()));
}

}  // namespace
}  // namespace prov::fetcher
