// The AppC store and fetcher through the async harness: Mesos's
// AppcStoreTest.Recover and AppcImageFetcherTest (over HTTP from a test
// server on 127.0.0.1, and from a local directory), dependencies (two levels,
// a diamond, by id, a cycle), every compression libarchive reads, shared
// fetches, and bad ACIs (corrupt, no rootfs/, bad manifests, path escapes,
// wrong name or id) failing clearly with nothing stored.

#include <sys/stat.h>

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "store/aci.hpp"
#include "testkit/files.hpp"
#include "tests/store/appc_fixture.hpp"
#include "tests/support/faulty_disk.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using testing::TarCompression;
using testing::TarEntry;

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

AciSpec simple(const std::string& name, const std::string& content = "test") {
  AciSpec spec;
  spec.name = name;
  spec.rootfs = {TarEntry::directory("tmp"), TarEntry::file("tmp/test", content)};
  return spec;
}

// Mesos AppcStoreTest.Recover: an image put into the store's directory by
// hand is found after recover, by its name and labels.
TEST_F(AppcStoreTest, RecoverFindsAnImageAlreadyInTheStore) {
  AciSpec spec = simple("example.com/recovered");
  const std::string id = aciId(makeAci(spec, TarCompression::None));
  const fs::path dir = storeDir_ / "images" / id;
  fs::create_directories(dir / "rootfs/tmp");
  std::ofstream(dir / "manifest") << manifestJson(spec);
  std::ofstream(dir / "rootfs/tmp/test") << "test";
  restartStore();  // recovers

  auto info = store_->get(appcImage("example.com/recovered"));
  AWAIT_READY(info);
  ASSERT_EQ(1u, info->layers.size());
  EXPECT_EQ(fs::canonical(dir / "rootfs").string(), info->layers[0]);
  EXPECT_EQ(id, info->image.appc().id());
}

// Mesos AppcImageFetcherTest.CURL_SimpleHttpFetch, through the fetcher alone.
TEST_F(AppcStoreTest, FetcherDownloadsOverHttp) {
  const std::string bytes = makeAci(simple("example.com/image"));
  publishBytes("example.com/image", bytes);
  fetcher::AppcFetchOptions options;
  options.prefix = server_.url() + "/acis/";
  auto fetcher = fetcher::AppcFetcher::create(runtime_, options);
  ASSERT_TRUE(fetcher.isSome()) << fetcher.error().message;
  auto query = fetcher::withDefaultLabels(appcImage("example.com/image").appc());
  ASSERT_TRUE(query.isSome());
  const fs::path into = sandbox() / "fetched";
  fs::create_directories(into);
  auto aci = (*fetcher)->fetch(*query, into.string());
  AWAIT_READY(aci);
  EXPECT_TRUE(aci->downloaded);
  EXPECT_EQ(server_.url() + "/acis/" + discoveryName("example.com/image"), aci->source);
  EXPECT_EQ(bytes, readFile(aci->path));
  EXPECT_EQ(1u, server_.count("/acis/example.com/image-latest-linux-"));

  auto missing = (*fetcher)->fetch(*fetcher::withDefaultLabels(appcImage("example.com/other").appc()), into.string());
  AWAIT_FAILED(missing);
  EXPECT_EQ(ErrorKind::NotFound, missing.failure().kind) << missing.failure().message;
  EXPECT_NE(std::string::npos, missing.failure().message.find("example.com/other-latest-linux-"));
  EXPECT_EQ(1, std::distance(fs::directory_iterator(into), fs::directory_iterator())) << "the failed download is gone";
}

// A download is bounded (by --max_layer_bytes in the command line), and a
// refused one leaves nothing.
TEST_F(AppcStoreTest, FetcherRefusesADownloadOverItsLimit) {
  const std::string bytes = makeAci(simple("example.com/big"));
  publishBytes("example.com/big", bytes);
  fetcher::AppcFetchOptions options;
  options.prefix = server_.url() + "/acis/";
  options.maxBytes = bytes.size() - 1;
  auto fetcher = fetcher::AppcFetcher::create(runtime_, options);
  ASSERT_TRUE(fetcher.isSome()) << fetcher.error().message;
  const fs::path into = sandbox() / "fetched";
  fs::create_directories(into);
  auto aci = (*fetcher)->fetch(*fetcher::withDefaultLabels(appcImage("example.com/big").appc()), into.string());
  AWAIT_EXPECT_ERROR(ErrorKind::ResourceExhausted, aci);
  EXPECT_NE(std::string::npos, aci.failure().message.find("example.com/big")) << aci.failure().message;
  EXPECT_NE(std::string::npos, aci.failure().message.find("--max_layer_bytes")) << aci.failure().message;
  EXPECT_TRUE(fs::is_empty(into)) << "the refused download is gone";
}

TEST_F(AppcStoreTest, FetchesOverHttpAndExtractsTheRootfs) {
  useHttp();
  const std::string id = publish(simple("example.com/image"));
  auto info = store_->get(appcImage("example.com/image"));
  AWAIT_READY(info);
  ASSERT_EQ(1u, info->layers.size());
  EXPECT_EQ("test", readFile(fs::path(info->layers[0]) / "tmp/test"));
  EXPECT_EQ(id, info->image.appc().id());
  EXPECT_EQ((storeDir_ / "images" / id / "manifest").string(), info->configPath);
  EXPECT_EQ(std::vector<std::string>{id}, storedImages());
  EXPECT_TRUE(stagingEmpty());
  // Cached now: no second request, also after a restart (the index).
  AWAIT_READY(store_->get(appcImage("example.com/image", {{"version", "latest"}})));
  restartStore();
  AWAIT_READY(store_->get(appcImage("example.com/image")));
  EXPECT_EQ(1u, server_.count(".aci"));
  // cached = false fetches again, and reuses the same id.
  auto image = appcImage("example.com/image");
  image.set_cached(false);
  auto again = store_->get(image);
  AWAIT_READY(again);
  EXPECT_EQ(id, again->image.appc().id());
  EXPECT_EQ(2u, server_.count(".aci"));
}

TEST_F(AppcStoreTest, HttpRetriesAServerErrorAndABrokenTransfer) {
  useHttp();
  const std::string id = publish(simple("example.com/flaky"));
  server_.fail({.match = "flaky", .status = 503, .headers = {}, .body = {}, .times = 1});
  server_.dropBlobsAfter(100, 1);
  auto info = store_->get(appcImage("example.com/flaky"));
  AWAIT_READY(info);
  EXPECT_EQ(id, info->image.appc().id());
  EXPECT_EQ(3u, server_.count("flaky"));
}

// Mesos AppcImageFetcherTest.SimpleFileFetch.
TEST_F(AppcStoreTest, FetchesFromALocalDirectoryWithoutCopyingTheAci) {
  const std::string id = publish(simple("example.com/local"));
  auto info = store_->get(appcImage("example.com/local"));
  AWAIT_READY(info);
  EXPECT_EQ("test", readFile(fs::path(info->layers[0]) / "tmp/test"));
  EXPECT_EQ(std::vector<std::string>{id}, storedImages());
  EXPECT_TRUE(fs::exists(acis_ / discoveryName("example.com/local"))) << "the source stays";
  EXPECT_TRUE(stagingEmpty());
}

TEST_F(AppcStoreTest, ReadsEveryCompressionAndHashesTheUncompressedTar) {
  for (auto [compression, tag] : {std::pair{TarCompression::None, "none"},
                                  {TarCompression::Gzip, "gzip"},
                                  {TarCompression::Bzip2, "bzip2"},
                                  {TarCompression::Xz, "xz"},
                                  {TarCompression::Zstd, "zstd"}}) {
    SCOPED_TRACE(tag);
    AciSpec spec = simple(std::string("example.com/") + tag, tag);
    publishBytes(spec.name, makeAci(spec, compression));
    auto info = store_->get(appcImage(spec.name));
    AWAIT_READY(info);
    EXPECT_EQ(aciId(makeAci(spec, TarCompression::None)), info->image.appc().id());
    EXPECT_EQ(tag, readFile(fs::path(info->layers[0]) / "tmp/test"));
  }
}

TEST_F(AppcStoreTest, TheRuntimeConfigComesFromTheManifest) {
  AciSpec spec = simple("example.com/app");
  spec.exec = {"/bin/app", "--flag"};
  spec.environment = {"PATH=/bin", "MODE=test"};
  spec.workingDirectory = "/srv";
  publish(spec);
  auto info = store_->get(appcImage("example.com/app"));
  AWAIT_READY(info);
  const auto& config = info->image.config();
  EXPECT_EQ((std::vector<std::string>{"/bin/app", "--flag"}), testing::strings(config.entrypoint()));
  EXPECT_EQ((std::vector<std::string>{"PATH=/bin", "MODE=test"}), testing::strings(config.env()));
  EXPECT_EQ("/srv", config.working_dir());
  EXPECT_EQ("0:0", config.user());
}

// Two levels of dependencies: the layers come base first, each once, and
// the manifest is the image's own (Mesos returned the first dependency's).
TEST_F(AppcStoreTest, DependenciesComeFirstInOrderAndTheManifestIsTheImagesOwn) {
  AciSpec base = simple("example.com/base", "base");
  const std::string baseId = publish(base);
  AciSpec left = simple("example.com/left", "left");
  left.dependencies = {{"example.com/base", baseId, {}}};  // by id
  const std::string leftId = publish(left);
  AciSpec right = simple("example.com/right", "right");
  right.dependencies = {{"example.com/base", "", {{"version", "latest"}}}};  // by name and labels
  const std::string rightId = publish(right);
  AciSpec top = simple("example.com/top", "top");
  top.exec = {"/bin/top"};
  top.dependencies = {{"example.com/left", "", {}}, {"example.com/right", "", {}}};
  const std::string topId = publish(top);

  auto info = store_->get(appcImage("example.com/top"));
  AWAIT_READY(info);
  const fs::path images = storeDir_ / "images";
  EXPECT_EQ((std::vector<std::string>{(images / baseId / "rootfs").string(), (images / leftId / "rootfs").string(),
                                      (images / rightId / "rootfs").string(), (images / topId / "rootfs").string()}),
            info->layers);
  EXPECT_EQ(topId, info->image.appc().id());
  EXPECT_EQ("/bin/top", info->image.config().entrypoint(0));
  EXPECT_EQ((images / topId / "manifest").string(), info->configPath);
  EXPECT_EQ(4, info->image.appc().image_ids_size());
  EXPECT_TRUE(stagingEmpty());
}

// Directories an image only implies (tmp/x without tmp) take their owner,
// mode and times from its dependencies, not 0755 root, so overlay does not
// hide the dependency's /tmp; a symlink there in a dependency is no error.
TEST_F(AppcStoreTest, ImpliedDirectoriesAreSettledAgainstTheDependencies) {
  AciSpec base = simple("example.com/base");
  TarEntry etc = TarEntry::directory("etc", 0700);
  etc.uid = 7;
  etc.gid = 8;
  base.rootfs = {TarEntry::directory("tmp", 01777), etc, TarEntry::directory("usr"), TarEntry::directory("usr/bin"),
                 TarEntry::symlink("bin", "usr/bin")};
  publish(base);
  AciSpec app = simple("example.com/app");
  app.dependencies = {{"example.com/base", "", {}}};
  app.rootfs = {TarEntry::file("tmp/x", "x"), TarEntry::file("etc/y", "y"), TarEntry::file("bin/z", "z"),
                TarEntry::file("new/w", "w")};
  const std::string appId = publish(app);
  auto info = store_->get(appcImage("example.com/app"));
  AWAIT_READY(info);
  const fs::path rootfs = storeDir_ / "images" / appId / "rootfs";
  struct stat st {};
  ASSERT_EQ(0, ::stat((rootfs / "tmp").c_str(), &st));
  EXPECT_EQ(01777u, st.st_mode & 07777);
  ASSERT_EQ(0, ::stat((rootfs / "etc").c_str(), &st));
  EXPECT_EQ(0700u, st.st_mode & 07777);
  EXPECT_EQ(7u, st.st_uid);
  EXPECT_EQ(8u, st.st_gid);
  ASSERT_EQ(0, ::stat((rootfs / "bin").c_str(), &st));
  EXPECT_EQ(0755u, st.st_mode & 07777) << "a symlink below: the default stays";
  ASSERT_EQ(0, ::stat((rootfs / "new").c_str(), &st));
  EXPECT_EQ(0755u, st.st_mode & 07777);
  EXPECT_FALSE(fs::exists(storeDir_ / "images" / appId / "implied")) << "settled once";
}

TEST_F(AppcStoreTest, ADependencyWhoseIdDoesNotMatchFails) {
  AciSpec base = simple("example.com/base");
  publish(base);
  AciSpec top = simple("example.com/top");
  top.dependencies = {{"example.com/base", "sha512-" + std::string(128, 'a'), {}}};
  publish(top);
  auto info = store_->get(appcImage("example.com/top"));
  AWAIT_FAILED(info);
  EXPECT_EQ(ErrorKind::DigestMismatch, info.failure().kind) << info.failure().message;
  EXPECT_NE(std::string::npos, info.failure().message.find("example.com/base")) << info.failure().message;
  EXPECT_EQ(1u, storedImages().size()) << "only the top image, which did verify";
  EXPECT_TRUE(stagingEmpty());
  auto listed = store_->images();
  AWAIT_READY(listed);
  EXPECT_TRUE(listed->empty());
}

TEST_F(AppcStoreTest, ADependencyCycleIsAnError) {
  AciSpec a = simple("example.com/a");
  a.dependencies = {{"example.com/b", "", {}}};
  publish(a);
  AciSpec b = simple("example.com/b");
  b.dependencies = {{"example.com/a", "", {}}};
  publish(b);
  auto info = store_->get(appcImage("example.com/a"));
  AWAIT_FAILED(info);
  EXPECT_EQ(ErrorKind::InvalidArgument, info.failure().kind);
  EXPECT_NE(std::string::npos, info.failure().message.find("cycle")) << info.failure().message;
  EXPECT_NE(std::string::npos, info.failure().message.find("example.com/a")) << info.failure().message;
}

// Every image depends on all the ones before it (and lists one twice): each
// is resolved once, not once per path (2^20 of them).
TEST_F(AppcStoreTest, ADenseDependencyGraphResolvesEachImageOnce) {
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    AciSpec spec = simple("example.com/n" + std::to_string(i), std::to_string(i));
    for (int j = 0; j < i; ++j) spec.dependencies.push_back({"example.com/n" + std::to_string(j), "", {}});
    if (i > 0) spec.dependencies.push_back({"example.com/n0", "", {}});
    ids.push_back(publish(spec));
  }
  auto info = store_->get(appcImage("example.com/n19"));
  AWAIT_READY_FOR(info, std::chrono::seconds(60));
  std::vector<std::string> got(info->image.appc().image_ids().begin(), info->image.appc().image_ids().end());
  EXPECT_EQ(ids, got);
}

TEST_F(AppcStoreTest, ADependencyTreeOverTheLimitIsRefused) {
  // The default limit: 128.
  for (int i = 0; i < 130; ++i) {
    AciSpec spec = simple("example.com/c" + std::to_string(i), std::to_string(i));
    if (i + 1 < 130) spec.dependencies.push_back({"example.com/c" + std::to_string(i + 1), "", {}});
    publish(spec);
  }
  auto info = store_->get(appcImage("example.com/c0"));
  AWAIT_FAILED_FOR(info, std::chrono::seconds(120));
  EXPECT_EQ(ErrorKind::ResourceExhausted, info.failure().kind) << info.failure().message;
  EXPECT_NE(std::string::npos, info.failure().message.find("more than 128 images")) << info.failure().message;
  EXPECT_NE(std::string::npos, info.failure().message.find("--max_image_layers")) << info.failure().message;
  EXPECT_NE(std::string::npos, info.failure().message.find("example.com/c0")) << info.failure().message;
}

TEST_F(AppcStoreTest, AnImageAskedForByIdIsIndexedUnderItsId) {
  const std::string id = publish(simple("example.com/pinned"));
  messages::Image image = appcImage("example.com/pinned");
  image.mutable_appc()->set_id(id);
  AWAIT_READY(store_->get(image));
  auto listed = store_->images();
  AWAIT_READY(listed);
  ASSERT_EQ(1u, listed->size());
  EXPECT_EQ("@" + id, listed->at(0).key().substr(listed->at(0).key().size() - id.size() - 1));
}

TEST_F(AppcStoreTest, AnArchiveRootEntryIsAccepted) {
  const std::string manifest = manifestJson(simple("example.com/dotted"));
  publishBytes("example.com/dotted",
               testing::makeTar({TarEntry::directory("."), TarEntry::file("./manifest", manifest),
                                 TarEntry::directory("./rootfs"), TarEntry::file("./rootfs/a", "a")}));
  auto info = store_->get(appcImage("example.com/dotted"));
  AWAIT_READY(info);
  EXPECT_EQ("a", readFile(fs::path(info->layers[0]) / "a"));
}

TEST_F(AppcStoreTest, ConcurrentGetsShareOneFetch) {
  useHttp();
  const std::string id = publish(simple("example.com/shared"));
  std::vector<actors::Future<ImageInfo>> gets;
  for (int i = 0; i < 5; ++i) gets.push_back(store_->get(appcImage("example.com/shared")));
  for (auto& get : gets) {
    AWAIT_READY(get);
    EXPECT_EQ(id, get->image.appc().id());
  }
  EXPECT_EQ(1u, server_.count(".aci"));
}

// Image.priority reaches the extractor for AppC fetches: with the one slot
// held, an urgent image takes the extra slot; a plain one waits until a
// more urgent request for it joins its fetch and raises it.
TEST_F(AppcStoreTest, APriorityAndARaiseReachTheExtractor) {
  extractor_ = std::make_shared<Extractor>(runtime_, ExtractorOptions{.slots = 1, .urgentSlots = 1});
  restartStore();
  publish(simple("example.com/plain"));
  publish(simple("example.com/urgent"));
  // Holds the slot: an extraction whose archive never comes until the end.
  messages::ExtractRequest holder;
  holder.set_format(messages::ExtractRequest::ACI);
  holder.set_what("the holder");
  holder.set_staging_parent((storeDir_ / "staging").string());
  actors::Promise<Fed> never;
  auto held = extractor_->extract(
      holder, [&](const std::string&, const std::shared_ptr<fetcher::ByteSink>&) { return never.future(); });
  auto waiting = [&](std::size_t n) {
    for (int i = 0; i < 3000; ++i) {
      auto load = extractor_->load();
      if (load.waitFor(std::chrono::seconds(5)) && load.isReady() && load->waiting == n && load->running >= 1)
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  };
  auto plain = store_->get(appcImage("example.com/plain"));
  ASSERT_TRUE(waiting(1));
  messages::Image urgentImage = appcImage("example.com/urgent");
  urgentImage.set_priority(5);
  AWAIT_READY(store_->get(urgentImage));
  EXPECT_TRUE(plain.isPending()) << "0 is not above the holder's 0";
  messages::Image raised = appcImage("example.com/plain");
  raised.set_priority(9);
  auto joined = store_->get(raised);
  AWAIT_READY(joined);
  AWAIT_READY(plain);
  EXPECT_EQ(plain->image.appc().id(), joined->image.appc().id());
  EXPECT_TRUE(held.isPending());
  never.fail(Error(ErrorKind::Cancelled, "the test is over"));
  AWAIT_FAILED(held);
}

// Bad ACIs: a clear error naming the image, and nothing stored.
class BadAciTest : public AppcStoreTest {
 protected:
  void expectRejected(const std::string& bytes, ErrorKind kind, const std::string& says) {
    publishBytes("example.com/bad", bytes);
    auto info = store_->get(appcImage("example.com/bad"));
    AWAIT_FAILED(info);
    EXPECT_EQ(kind, info.failure().kind) << info.failure().message;
    EXPECT_NE(std::string::npos, info.failure().message.find(says)) << info.failure().message;
    EXPECT_NE(std::string::npos, info.failure().message.find("example.com/bad")) << info.failure().message;
    EXPECT_TRUE(storedImages().empty());
    EXPECT_TRUE(stagingEmpty());
  }
};

TEST_F(BadAciTest, ACorruptAci) {
  std::string bytes = makeAci(simple("example.com/bad"));
  expectRejected(bytes.substr(0, bytes.size() / 2), ErrorKind::Corruption, "decompress");
  expectRejected("this is not an archive at all, just text", ErrorKind::Corruption, "not a valid tar");
}

TEST_F(BadAciTest, AnAciWithoutRootfs) {
  expectRejected(testing::makeTar({TarEntry::file("manifest", manifestJson(simple("example.com/bad")))}),
                 ErrorKind::InvalidArgument, "no 'rootfs/'");
}

TEST_F(BadAciTest, AnAciWithoutManifest) {
  expectRejected(testing::makeTar({TarEntry::directory("rootfs"), TarEntry::file("rootfs/a", "a")}),
                 ErrorKind::InvalidArgument, "no 'manifest'");
}

TEST_F(BadAciTest, BadManifests) {
  const std::string good = manifestJson(simple("example.com/bad"));
  auto with = [&](const std::string& from, const std::string& to) {
    std::string json = good;
    const auto at = json.find(from);
    EXPECT_NE(std::string::npos, at) << from;
    return testing::makeTar(aciEntries(json.replace(at, from.size(), to), {TarEntry::file("a", "a")}));
  };
  expectRejected(with("\"ImageManifest\"", "\"PodManifest\""), ErrorKind::InvalidArgument, "acKind");
  expectRejected(with("\"user\":\"0\",", ""), ErrorKind::InvalidArgument, "'user' is missing");
  expectRejected(with("\"labels\":[", "\"labels\":[{\"name\":\"Bad_Label\",\"value\":\"x\"},"),
                 ErrorKind::InvalidArgument, "Bad_Label");
  expectRejected(with("\"workingDirectory\":\"/\"", "\"workingDirectory\":\"relative\""), ErrorKind::InvalidArgument,
                 "workingDirectory");
  expectRejected(testing::makeTar(aciEntries("{not json", {})), ErrorKind::InvalidArgument, "not a JSON object");
  expectRejected(with("\"name\":\"example.com/bad\"", "\"name\":\"example.com/other\""), ErrorKind::InvalidArgument,
                 "names 'example.com/other'");
}

TEST_F(BadAciTest, AmbiguousManifests) {
  const std::string manifest = manifestJson(simple("example.com/bad"));
  expectRejected(testing::makeTar({TarEntry::file("manifest", manifest), TarEntry::file("manifest", manifest),
                                   TarEntry::directory("rootfs")}),
                 ErrorKind::InvalidArgument, "twice");
  std::string repeated = manifest;
  repeated.insert(1, "\"name\":\"example.com/other\",");
  expectRejected(testing::makeTar(aciEntries(repeated, {})), ErrorKind::InvalidArgument, "key 'name' twice");
}

TEST_F(BadAciTest, AnImageForAnotherArchitecture) {
  AciSpec spec = simple("example.com/bad");
  spec.labels["arch"] = "someotherarch";
  expectRejected(makeAci(spec), ErrorKind::InvalidArgument, "arch 'someotherarch'");
}

TEST_F(BadAciTest, PathEscapes) {
  const std::string manifest = manifestJson(simple("example.com/bad"));
  const fs::path outside = sandbox() / "outside";
  fs::create_directories(outside);
  // A `..` that climbs out of rootfs/.
  expectRejected(testing::makeTar({TarEntry::file("manifest", manifest), TarEntry::directory("rootfs"),
                                   TarEntry::file("rootfs/../../escaped", "x")}),
                 ErrorKind::InvalidArgument, "'..'");
  // A write through a symlink that points outside.
  expectRejected(testing::makeTar({TarEntry::file("manifest", manifest), TarEntry::directory("rootfs"),
                                   TarEntry::symlink("rootfs/link", outside.string()),
                                   TarEntry::file("rootfs/link/escaped", "x")}),
                 ErrorKind::InvalidArgument, "symlink");
  // An entry beside manifest and rootfs/.
  expectRejected(testing::makeTar({TarEntry::file("manifest", manifest), TarEntry::directory("rootfs"),
                                   TarEntry::file("etc/passwd", "x")}),
                 ErrorKind::InvalidArgument, "outside 'rootfs/'");
  // A hardlink from the rootfs to the manifest.
  TarEntry link = TarEntry::file("rootfs/m", "");
  link.type = TarEntry::Type::Hardlink;
  link.content = "manifest";
  expectRejected(testing::makeTar({TarEntry::file("manifest", manifest), TarEntry::directory("rootfs"), link}),
                 ErrorKind::InvalidArgument, "hardlink target");
  EXPECT_TRUE(fs::is_empty(outside)) << "nothing written outside";
  EXPECT_FALSE(fs::exists(storeDir_ / "escaped"));
  EXPECT_FALSE(fs::exists(storeDir_.parent_path() / "escaped"));
}

TEST_F(AppcStoreTest, BadImageNamesAndLabelsAreRefusedBeforeAnyFetch) {
  useHttp();
  for (const auto& name : {"Example.com/upper", "example.com//double", "-leading", ""}) {
    auto info = store_->get(appcImage(name));
    AWAIT_FAILED(info);
    EXPECT_EQ(ErrorKind::InvalidArgument, info.failure().kind) << name;
  }
  for (const auto& value : {"../../etc", "1?x=y", "a,b", "%2e%2e"}) {
    auto badLabel = store_->get(appcImage("example.com/x", {{"version", value}}));
    AWAIT_FAILED(badLabel);
    EXPECT_EQ(ErrorKind::InvalidArgument, badLabel.failure().kind) << value;
  }
  EXPECT_EQ(0u, server_.requests().size());
}

TEST_F(AppcStoreTest, RecoverEmptiesStagingAndDropsBrokenImages) {
  const std::string id = publish(simple("example.com/keep"));
  AWAIT_READY(store_->get(appcImage("example.com/keep")));
  fs::create_directories(storeDir_ / "staging/leftover/rootfs");
  fs::create_directories(storeDir_ / "images" / ("sha512-" + std::string(128, 'b')) / "rootfs");  // no manifest
  restartStore();
  EXPECT_TRUE(stagingEmpty());
  EXPECT_EQ(std::vector<std::string>{id}, storedImages());
  auto listed = store_->images();
  AWAIT_READY(listed);
  ASSERT_EQ(1u, listed->size());
  EXPECT_EQ(id, listed->at(0).appc().id());
}

// The index as the AppC store wrote it until session 5: the image's id in
// manifest_digest and the ids it is made of in layer_ids. recover() moves
// them into StoredImage::appc, rewrites the file, and serves the entry from
// the index without fetching again.
TEST_F(AppcStoreTest, RecoverMigratesAnIndexInTheFormerLayout) {
  const auto [baseId, topId] = publishTopOnBase();
  auto first = store_->get(appcImage("example.com/top"));
  AWAIT_READY(first);
  const std::string key = first->image.key();
  store_.reset();

  messages::StoredImages former;
  messages::StoredImage* entry = former.add_images();
  entry->set_key(key);
  entry->set_manifest_digest(topId);
  entry->add_layer_ids(baseId);
  entry->add_layer_ids(topId);
  *entry->mutable_config() = first->image.config();
  entry->set_pulled_at(1);  // only the index knows this
  std::string bytes;
  ASSERT_TRUE(former.SerializeToString(&bytes));
  std::ofstream(storeDir_ / "index/images", std::ios::binary | std::ios::trunc) << bytes;
  // Nothing to fetch from: the entry must come from the index.
  fs::remove_all(acis_);
  fs::create_directories(acis_);

  restartStore();
  auto listed = store_->images();
  AWAIT_READY(listed);
  ASSERT_EQ(1u, listed->size());
  EXPECT_EQ(topId, listed->at(0).appc().id());
  EXPECT_EQ((std::vector<std::string>{baseId, topId}), testing::strings(listed->at(0).appc().image_ids()));
  EXPECT_EQ("", listed->at(0).manifest_digest());
  EXPECT_EQ(0, listed->at(0).layer_ids_size());

  messages::StoredImages rewritten;
  ASSERT_TRUE(rewritten.ParseFromString(readFile(storeDir_ / "index/images")));
  ASSERT_EQ(1, rewritten.images_size());
  EXPECT_EQ(topId, rewritten.images(0).appc().id());
  EXPECT_EQ(0, rewritten.images(0).layer_ids_size());

  auto again = store_->get(appcImage("example.com/top"));
  AWAIT_READY(again);
  EXPECT_EQ(first->layers, again->layers);
  EXPECT_EQ(first->configPath, again->configPath);
  EXPECT_EQ(1, again->image.pulled_at()) << "served from the migrated index entry";
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(first->image.config(), again->image.config()));
}

TEST_F(AppcStoreTest, PruneKeepsExcludedAndInUseImagesAndRemovesTheRest) {
  const auto [baseId, topId] = publishTopOnBase();
  const std::string loneId = publish(simple("example.com/lone", "lone"));
  const std::string usedId = publish(simple("example.com/used", "used"));
  AWAIT_READY(store_->get(appcImage("example.com/top")));
  AWAIT_READY(store_->get(appcImage("example.com/lone")));
  auto used = store_->get(appcImage("example.com/used"));
  AWAIT_READY(used);
  AWAIT_READY(store_->prune({appcImage("example.com/top")}, {used->layers[0]}));
  std::vector<std::string> expected = {baseId, topId, usedId};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(expected, storedImages());
  (void)loneId;
}

// usage() lists what each AppC image is made of (its dependencies too) and
// what each image in the store takes on disk, measured at the first usage()
// (not during the fetch) and written beside it; remove() forgets one image
// and removes what no other entry uses, keeping a dependency another entry
// shares.
TEST_F(AppcStoreTest, UsageCountsEachImageAndRemoveKeepsWhatOthersUse) {
  const auto [baseId, topId] = publishTopOnBase();
  const std::string loneId = publish(simple("example.com/lone", "lone"));
  auto top = store_->get(appcImage("example.com/top"));
  AWAIT_READY(top);
  auto base = store_->get(appcImage("example.com/base"));
  AWAIT_READY(base);
  auto lone = store_->get(appcImage("example.com/lone"));
  AWAIT_READY(lone);
  for (const auto& id : {baseId, topId, loneId}) {
    EXPECT_FALSE(fs::exists(storeDir_ / "images" / id / "usage")) << "measured during the fetch: " << id;
  }
  auto usage = store_->usage();
  AWAIT_READY(usage);
  EXPECT_EQ(3u, usage->images.size());
  EXPECT_EQ(top->layers, usage->contentOf.at(top->image.key()));
  EXPECT_EQ(3u, usage->bytes.size()) << "base, top and lone";
  for (const auto& id : {baseId, topId, loneId}) {
    const fs::path rootfs = storeDir_ / "images" / id / "rootfs";
    ASSERT_EQ(1u, usage->bytes.count(rootfs.string())) << id;
    EXPECT_GT(usage->bytes.at(rootfs.string()), 0) << id;
    EXPECT_EQ(std::to_string(usage->bytes.at(rootfs.string())) + "\n",
              testing::readFile(storeDir_ / "images" / id / "usage"));
  }
  AWAIT_READY(store_->remove({top->image.key(), lone->image.key(), "appc:unknown"}, {}));
  EXPECT_EQ(std::vector<std::string>{baseId}, storedImages()) << "base stays: its own entry uses it";
  auto after = store_->usage();
  AWAIT_READY(after);
  EXPECT_EQ(1u, after->images.size());
  EXPECT_EQ(1u, after->bytes.size());
  EXPECT_TRUE(store_->keyOf(appcImage("example.com/base")).isSome());
  EXPECT_TRUE(store_->keyOf(messages::Image()).isError()) << "a Docker image is not the AppC store's";
}

// Every N-th disk call of a prune fails: the prune fails naming the errno,
// or succeeds; either way a retried prune leaves exactly the kept images
// (a failed prune used to forget what it had not removed yet, for good).
class AppcStoreFaultTest : public AppcStoreTest {
 protected:
  // Installed for the whole test, TearDown included: the store's gc sweep
  // may still call it until the store is gone.
  testing::FaultyDisk disk_;
};

TEST_F(AppcStoreFaultTest, PruneUnderEveryFault) {
  const auto [baseId, topId] = publishTopOnBase();
  const std::string loneId = publish(simple("example.com/lone", "lone"));
  testing::FaultyDisk& disk = disk_;
  Future<Nothing> pruned;
  const long count = testing::fault::sweep(
      disk, std::nullopt, ENOSPC,
      [&] {
        store_.reset();
        std::filesystem::remove_all(storeDir_);
        restartStore();
        AWAIT_READY(store_->get(appcImage("example.com/top")));
        AWAIT_READY(store_->get(appcImage("example.com/lone")));
      },
      [&] {
        pruned = store_->prune({appcImage("example.com/top")}, {});
        pruned.waitFor(testing::kDefaultAwait);
      },
      [&](long n, const std::optional<std::string>& failedCall) {
        ASSERT_TRUE(testing::fault::endedClearly(pruned, n, failedCall, {storeDir_.string()}));
        if (pruned.isFailed()) {
          AWAIT_READY(store_->prune({appcImage("example.com/top")}, {}));
        }
        std::vector<std::string> expected = {baseId, topId};
        std::sort(expected.begin(), expected.end());
        EXPECT_EQ(expected, storedImages()) << "call " << n;
        auto images = store_->images();
        AWAIT_READY(images);
        EXPECT_EQ(1u, images->size()) << "call " << n;
      });
  EXPECT_GE(count, 5);
  (void)loneId;
}

TEST(AppcNamesTest, DefaultsAndKeys) {
  messages::AppcImage image;
  image.set_name("example.com/app");
  auto filled = fetcher::withDefaultLabels(image);
  ASSERT_TRUE(filled.isSome());
  EXPECT_EQ("appc:example.com/app,arch=" + fetcher::hostAppcArch() + ",os=linux,version=latest",
            fetcher::appcKey(*filled));
  EXPECT_EQ("example.com/app-latest-linux-" + fetcher::hostAppcArch() + ".aci", fetcher::simpleDiscoveryName(*filled));
  (*image.mutable_labels())["version"] = "1.2.3";
  EXPECT_EQ("example.com/app-1.2.3-linux-" + fetcher::hostAppcArch() + ".aci",
            fetcher::simpleDiscoveryName(*fetcher::withDefaultLabels(image)));
  EXPECT_TRUE(fetcher::validateAcIdentifier("a.b-c_d~e/f", "x").isSome());
  EXPECT_TRUE(fetcher::validateAcIdentifier("a..b", "x").isError());
  EXPECT_TRUE(fetcher::validateAcIdentifier("a/", "x").isError());
  EXPECT_TRUE(fetcher::validateAcName("a-b", "x").isError() == false);
  EXPECT_TRUE(fetcher::validateAcName("a.b", "x").isError());
}

TEST(AppcManifestTest, NullExecIsAcceptedAndFieldsAreParsed) {
  auto parsed = fetcher::parseAppcManifest(
      R"({"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x",
          "app":{"exec":null,"user":"1","group":"2","environment":[{"name":"A","value":"b"}]},
          "dependencies":[{"imageName":"example.com/dep","labels":[{"name":"version","value":"1"}]}]})",
      "test");
  ASSERT_TRUE(parsed.isSome()) << parsed.error().message;
  EXPECT_EQ(0, parsed->app().exec_size());
  EXPECT_EQ("A=b", parsed->app().environment(0));
  EXPECT_EQ("1", parsed->dependencies(0).labels().at("version"));
  EXPECT_EQ("1:2", fetcher::appcRuntimeConfig(*parsed).user());
  auto noVersion = fetcher::parseAppcManifest(R"({"acKind":"ImageManifest","name":"example.com/x"})", "test");
  ASSERT_TRUE(noVersion.isError());
  EXPECT_NE(std::string::npos, noVersion.error().message.find("acVersion"));
}

}  // namespace
}  // namespace prov::store
