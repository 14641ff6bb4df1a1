// The image store against the fake registry: caching by normalised
// reference, shared pulls and layers, discard, bad blobs, recover, prune;
// and the layers it stores, assembled by the overlay backend (Mesos's
// ROOT_..._Whiteout and ROOT_..._Overwrite cases).

#include <sys/stat.h>
#include <sys/xattr.h>

#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include <mutex>

#include "actors/actors.hpp"
#include "backend/backend.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/local/local.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "store/image_store.hpp"
#include "store/layer_disk.hpp"
#include "store/layer_record.hpp"
#include "store/paths.hpp"
#include "testkit/files.hpp"
#include "tests/store/store_fixture.hpp"
#include "tests/support/await.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using testing::TarEntry;

TEST_F(ImageStoreTest, CachesByNormalisedReference) {
  auto built = publish("library/busybox", "latest", {{TarEntry::file("bin/busybox", "#!busybox")}});
  auto first = store_->get(dockerImage("busybox"));
  AWAIT_READY(first);
  ASSERT_EQ(1u, first->layers.size());
  EXPECT_EQ("#!busybox", testing::readFile(fs::path(first->layers[0]) / "bin/busybox"));
  EXPECT_EQ("docker://docker.io/library/busybox:latest", first->image.key());
  EXPECT_EQ(built.manifestDigest, first->image.manifest_digest());
  EXPECT_EQ(std::vector<std::string>{"/bin/sh"}, testing::strings(first->image.config().cmd()));
  EXPECT_EQ(built.configJson, testing::readFile(first->configPath));
  const std::size_t manifests = registry_.count("/manifests/");
  for (const char* same : {"busybox:latest", "docker.io/library/busybox", "index.docker.io/library/busybox:latest"}) {
    auto again = store_->get(dockerImage(same));
    AWAIT_READY(again);
    EXPECT_EQ(first->layers, again->layers) << same;
  }
  EXPECT_EQ(manifests, registry_.count("/manifests/")) << "cache hits must not ask the registry";
  AWAIT_ASSERT_EQ(1u, store_->images().then([](const std::vector<messages::StoredImage>& v) { return v.size(); }));
  expectStagingEmpty();
}

TEST_F(ImageStoreTest, CachedFalseRechecksTheManifestAndReusesLayers) {
  auto built = publish("test/app", "v1", {{TarEntry::file("a", "1")}, {TarEntry::file("b", "2")}});
  AWAIT_READY(store_->get(dockerImage(registry_.hostPort() + "/test/app:v1")));
  const std::size_t manifests = registry_.count("/manifests/");
  const std::size_t blobs = registry_.count("/blobs/");
  messages::Image recheck = dockerImage(registry_.hostPort() + "/test/app:v1");
  recheck.set_cached(false);
  AWAIT_READY(store_->get(recheck));
  EXPECT_LT(manifests, registry_.count("/manifests/"));
  EXPECT_EQ(blobs + 1, registry_.count("/blobs/")) << "only the config is fetched again";
}

TEST_F(ImageStoreTest, ALayerMissingOnDiskIsPulledAgain) {
  auto built = publish("test/app", "v1", {{TarEntry::file("a", "1")}, {TarEntry::file("b", "2")}});
  auto info = store_->get(dockerImage(registry_.hostPort() + "/test/app:v1"));
  AWAIT_READY(info);
  fs::remove_all(fs::path(info->layers[1]).parent_path());
  const std::size_t layerFetches = registry_.count(built.layerDigests[1]);
  auto again = store_->get(dockerImage(registry_.hostPort() + "/test/app:v1"));
  AWAIT_READY(again);
  EXPECT_EQ("2", testing::readFile(fs::path(again->layers[1]) / "b"));
  EXPECT_EQ(layerFetches + 1, registry_.count(built.layerDigests[1]));
}

// A burst of gets of a cached image looks at the disk once: a get that
// comes while a look is under way takes its answer. On a runtime of one
// blocking thread, which runs its jobs in order: a job that holds it, the
// look of a first get, a job that removes a layer, then a second get. Had
// the second get looked for itself, after the removal, it would pull again,
// which this store (no image source) fails.
TEST_F(ImageStoreTest, GetsOfACachedImageThatComeTogetherShareOneLookAtTheDisk) {
  auto built = publish("test/app", "v1", {{TarEntry::file("a", "1")}, {TarEntry::file("b", "2")}});
  const messages::Image image = dockerImage(registry_.hostPort() + "/test/app:v1");
  auto pulled = store_->get(image);
  AWAIT_READY(pulled);
  const std::size_t layerFetches = registry_.count(built.layerDigests[1]);
  store_.reset();
  {
    actors::Runtime single(actors::Runtime::Options{.blockingThreads = 1});
    ImageStoreOptions options;
    options.storeDir = storeDir_.string();
    auto store = ImageStore::create(single, options, [](const messages::Image&) { return nullptr; });
    ASSERT_TRUE(store.isSome()) << store.error().message;
    AWAIT_READY((*store)->recover());

    actors::Promise<Nothing> holding, release;
    auto held = actors::async(single, [&holding, gate = release.future()] {
      holding.set(Nothing{});
      gate.waitFor(std::chrono::seconds(30));
    });
    AWAIT_READY(holding.future());
    auto first = (*store)->get(image);
    AWAIT_READY((*store)->images());  // the first get taken: its look waits behind `held`
    auto removed = actors::async(single,
                                 [layer = fs::path(pulled->layers[1]).parent_path()] { fs::remove_all(layer); });
    auto second = (*store)->get(image);
    AWAIT_READY((*store)->images());
    release.set(Nothing{});
    AWAIT_READY(first);
    AWAIT_READY(second);
    AWAIT_READY(removed);
    EXPECT_EQ(pulled->layers, second->layers);
  }
  // The layer was gone: a get now looks again and pulls it.
  restartStore();
  auto again = store_->get(image);
  AWAIT_READY(again);
  EXPECT_EQ(layerFetches + 1, registry_.count(built.layerDigests[1]));
  EXPECT_EQ("2", testing::readFile(fs::path(again->layers[1]) / "b"));
}

// An embedder may give its runtime one blocking thread. A layer's
// extraction then holds it for the whole transfer, and the transfer's
// chunks, hashed beside it on the pool, must not wait for a thread that
// never frees: the extraction hashes what no pool thread has started.
TEST_F(ImageStoreTest, APullCompletesOnARuntimeOfOneBlockingThread) {
  auto built = publish("test/app", "v1", {{TarEntry::file("big", randomBytes(4 << 20))}, {TarEntry::file("b", "2")}});
  actors::Runtime single(actors::Runtime::Options{.blockingThreads = 1});
  fetcher::RegistryOptions options;
  options.hubUrl = registry_.url();
  auto puller = fetcher::RegistryPuller::create(single, options, 4);
  ASSERT_TRUE(puller.isSome()) << puller.error().message;
  std::shared_ptr<fetcher::Puller> shared = std::move(*puller);
  ImageStoreOptions storeOptions;
  storeOptions.storeDir = (sandbox() / "single").string();
  storeOptions.syncLayers = false;
  auto store = ImageStore::create(single, storeOptions, [shared](const messages::Image&) { return shared; });
  ASSERT_TRUE(store.isSome()) << store.error().message;
  AWAIT_READY((*store)->recover());
  auto pulled = (*store)->get(dockerImage(registry_.hostPort() + "/test/app:v1"));
  AWAIT_READY(pulled);
  ASSERT_EQ(2u, pulled->layers.size());
  EXPECT_EQ(std::uintmax_t{4} << 20, fs::file_size(fs::path(pulled->layers[0]) / "big"));
  EXPECT_EQ("2", testing::readFile(fs::path(pulled->layers[1]) / "b"));
}

// The store notes each commit (paths::recent). After a reboot (another
// boot id in the notes) recover checks the layers committed last: a
// damaged one goes and the next get fetches it again; one whole stays as
// it is; a layer committed before the window is not read. Notes from this
// boot stay; lines past the window go at the next commit.
TEST_F(ImageStoreTest, AfterARebootTheLayersCommittedLastAreCheckedAndADamagedOneFetchedAgain) {
  auto built = publish("test/app", "v1",
                       {{TarEntry::file("base", std::string(1000, 'b'))},
                        {TarEntry::file("top", "top layer")},
                        {TarEntry::file("third", "whole")}});
  const auto image = dockerImage(registry_.hostPort() + "/test/app:v1");
  auto info = store_->get(image);
  AWAIT_READY(info);
  const fs::path journal = storeDir_ / "recent";
  auto commits = readRecentCommits(journal.string());
  ASSERT_EQ(3u, commits.size());
  const std::string boot = currentBootId();
  ASSERT_FALSE(boot.empty());
  for (const auto& c : commits) EXPECT_EQ(boot, c.bootId);
  fs::resize_file(fs::path(info->layers[0]) / "base", 10);
  fs::resize_file(fs::path(info->layers[1]) / "top", 0);
  struct stat third {};
  ASSERT_EQ(0, ::stat((fs::path(info->layers[2]) / "third").c_str(), &third));

  restartStore();  // the same boot: nothing is read
  EXPECT_TRUE(fs::exists(info->layers[1]));
  EXPECT_EQ(3u, readRecentCommits(journal.string()).size());

  // A reboot: the base was committed before the window (not in the notes).
  std::vector<RecentCommit> rebooted;
  for (auto c : commits) {
    if (fs::path(info->layers[0]).parent_path().filename() == c.name) continue;
    c.bootId = "an-earlier-boot";
    rebooted.push_back(c);
  }
  rebooted.push_back(RecentCommit{1, boot, "from-1970"});
  ASSERT_TRUE(writeRecentCommits(journal.string(), rebooted).isSome());
  restartStore();
  EXPECT_FALSE(fs::exists(info->layers[1])) << "the damaged recent layer went";
  EXPECT_TRUE(fs::exists(info->layers[2]));
  struct stat after {};
  ASSERT_EQ(0, ::stat((fs::path(info->layers[2]) / "third").c_str(), &after));
  EXPECT_EQ(third.st_ino, after.st_ino) << "the whole one stays as it is";
  EXPECT_EQ(10u, fs::file_size(fs::path(info->layers[0]) / "base")) << "not recent: not read";
  auto left = readRecentCommits(journal.string());
  ASSERT_EQ(1u, left.size()) << "the other boot's notes were checked";
  EXPECT_EQ("from-1970", left[0].name);
  // Still listed by the image: missing, not gone (image GC did not take it).
  auto listed = store_->verify({});
  AWAIT_READY(listed);
  const ContentCheck& missing = listed->checks.at(info->layers[1]);
  EXPECT_FALSE(missing.gone);
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(std::string::npos, missing.error.find("is missing")) << missing.error;

  const std::size_t fetches = registry_.count(built.layerDigests[1]);
  auto again = store_->get(image);
  AWAIT_READY(again);
  EXPECT_EQ("top layer", testing::readFile(fs::path(again->layers[1]) / "top"));
  EXPECT_EQ(fetches + 1, registry_.count(built.layerDigests[1]));
  left = readRecentCommits(journal.string());
  ASSERT_EQ(1u, left.size()) << "the line from 1970 is past the window";
  EXPECT_EQ(fs::path(again->layers[1]).parent_path().filename().string(), left[0].name);
}

TEST_F(ImageStoreTest, ConcurrentGetsShareOnePullAndSharedLayersAreFetchedOnce) {
  const std::vector<TarEntry> base = {TarEntry::file("base", std::string(256 * 1024, 'b'))};
  auto a = publish("test/a", "latest", {base, {TarEntry::file("a", "a")}});
  auto b = publish("test/b", "latest", {base, {TarEntry::file("b", "b")}});
  std::vector<actors::Future<ImageInfo>> gets;
  for (int i = 0; i < 3; ++i) gets.push_back(store_->get(dockerImage(registry_.hostPort() + "/test/a")));
  gets.push_back(store_->get(dockerImage(registry_.hostPort() + "/test/b:latest")));
  for (auto& get : gets) AWAIT_READY(get);
  EXPECT_EQ(1u, registry_.count("/v2/test/a/manifests/latest"));
  // The base's blob under either image's digest: the gzip header holds a
  // time, so the two publishes may differ in their bytes (not in their
  // diffID), and either pull may be the one to fetch it.
  const std::size_t baseFetches = registry_.count(a.layerDigests[0]) +
                                  (b.layerDigests[0] != a.layerDigests[0] ? registry_.count(b.layerDigests[0]) : 0);
  EXPECT_EQ(1u, baseFetches) << "the shared base layer is fetched once";
  EXPECT_EQ(1u, registry_.count(a.layerDigests[1]));
  EXPECT_EQ(1u, registry_.count(b.layerDigests[1]));
  EXPECT_EQ(gets[0]->layers[0], gets[3]->layers[0]);
  expectStagingEmpty();
}

TEST_F(ImageStoreTest, DiscardingOneCallerLeavesThePullDiscardingAllStopsIt) {
  publish("test/slow", "latest", {{TarEntry::file("big", randomBytes(64 * 1024))}});
  registry_.trickle(2);  // 64 KiB at one byte per 2 ms: long enough to discard in flight
  auto first = store_->get(dockerImage(registry_.hostPort() + "/test/slow"));
  auto second = store_->get(dockerImage(registry_.hostPort() + "/test/slow"));
  waitFor([&] { return registry_.count("/blobs/") >= 2; });  // config, then the layer started
  first.discard();
  AWAIT_DISCARDED(first);
  EXPECT_TRUE(second.isPending()) << "one caller leaving must not cancel the pull";
  second.discard();
  AWAIT_DISCARDED(second);
  waitFor([&] { return stagingEntries().empty(); });
  expectStagingEmpty();
  EXPECT_TRUE(fs::is_empty(storeDir_ / "layers"));
  AWAIT_ASSERT_EQ(0u, store_->images().then([](const std::vector<messages::StoredImage>& v) { return v.size(); }));
}

TEST_F(ImageStoreTest, BadBlobsFailClearlyAndStoreNothing) {
  const std::vector<TarEntry> tree = {TarEntry::file("f", std::string(1 << 20, 'z'))};
  struct Case {
    std::string name;
    std::function<void(const std::string& repo)> publishBad;
    ErrorKind kind;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"wrong digest",
       [&](const std::string& repo) {
         auto built = publish(repo, "latest", {tree});
         registry_.putBlob(built.layerDigests[0], testing::makeTar({TarEntry::file("f", "evil")}));
       },
       ErrorKind::DigestMismatch, "sha256:"},
      {"wrong diffID", [&](const std::string& repo) { publish(repo, "latest", {tree}, /*wrongDiffId=*/true); },
       ErrorKind::DigestMismatch, "diff_ids"},
      {"truncated gzip",
       [&](const std::string& repo) { publishRaw(repo, testing::makeTar(tree).substr(0, 600), tree); },
       ErrorKind::Corruption, "truncated"},
      {"gzip bomb",
       [&](const std::string& repo) { publish(repo, "latest", {{TarEntry::file("f", std::string(8 << 20, 0))}}); },
       ErrorKind::ResourceExhausted, "limit"},
      {"escape", [&](const std::string& repo) { publish(repo, "latest", {{TarEntry::file("../evil", "x")}}); },
       ErrorKind::InvalidArgument, "'../evil'"},
  };
  restartStore([](ImageStoreOptions& o) { o.limits.maxLayerBytes = 4 << 20; });
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string repo = "test/bad" + std::to_string(n++);
    c.publishBad(repo);
    auto got = store_->get(dockerImage(registry_.hostPort() + "/" + repo));
    AWAIT_FAILED(got);
    EXPECT_EQ(c.kind, got.failure().kind) << got.failure().message;
    EXPECT_NE(std::string::npos, got.failure().message.find(c.says)) << got.failure().message;
    EXPECT_NE(std::string::npos, got.failure().message.find(repo)) << got.failure().message;
    waitFor([&] { return stagingEntries().empty(); });
    expectStagingEmpty();
    EXPECT_TRUE(fs::is_empty(storeDir_ / "layers"));
  }
  EXPECT_FALSE(fs::exists(sandbox() / "evil"));
}

TEST_F(ImageStoreTest, RecoverEmptiesStagingAndDropsImagesWithMissingLayers) {
  publish("test/keep", "latest", {{TarEntry::file("k", "k")}});
  publish("test/lose", "latest", {{TarEntry::file("l", "l")}});
  AWAIT_READY(store_->get(dockerImage(registry_.hostPort() + "/test/keep")));
  auto lose = store_->get(dockerImage(registry_.hostPort() + "/test/lose"));
  AWAIT_READY(lose);
  fs::remove_all(fs::path(lose->layers[0]).parent_path());
  testing::writeFile(storeDir_ / "staging/leftover/rootfs/file", "half a layer");
  restartStore();
  expectStagingEmpty();
  auto images = store_->images();
  AWAIT_READY(images);
  ASSERT_EQ(1u, images->size());
  EXPECT_EQ("docker://" + registry_.hostPort() + "/test/keep:latest", images->front().key());
}

TEST_F(ImageStoreTest, RecoverStartsEmptyFromAnEmptyOrTruncatedIndex) {
  publish("test/app", "latest", {{TarEntry::file("a", "a")}});
  AWAIT_READY(store_->get(dockerImage(registry_.hostPort() + "/test/app")));
  const std::string index = testing::readFile(storeDir_ / "images");
  ASSERT_GT(index.size(), 10u);
  for (const std::string& broken : {std::string(), index.substr(0, index.size() / 2)}) {
    store_.reset();
    testing::writeFile(storeDir_ / "images", broken);
    restartStore();
    AWAIT_ASSERT_EQ(0u, store_->images().then([](const std::vector<messages::StoredImage>& v) { return v.size(); }));
    auto warning = store_->recoveryWarning();
    AWAIT_READY(warning);
    EXPECT_NE(std::string::npos, warning->find("images")) << warning.get();
    // And it works afterwards: the image is pulled again (its layer is reused).
    AWAIT_READY(store_->get(dockerImage(registry_.hostPort() + "/test/app")));
  }
}

TEST_F(ImageStoreTest, PruneKeepsExcludedImagesAndActiveLayers) {
  publish("test/keep", "latest", {{TarEntry::file("k", "k")}});
  publish("test/active", "latest", {{TarEntry::file("a", "a")}});
  publish("test/gone", "latest", {{TarEntry::file("g", "g")}});
  auto keep = store_->get(dockerImage(registry_.hostPort() + "/test/keep"));
  auto active = store_->get(dockerImage(registry_.hostPort() + "/test/active"));
  auto gone = store_->get(dockerImage(registry_.hostPort() + "/test/gone"));
  AWAIT_READY(keep);
  AWAIT_READY(active);
  AWAIT_READY(gone);
  std::set<std::string> inUse(active->layers.begin(), active->layers.end());
  inUse.insert(active->configPath);
  AWAIT_READY(store_->prune({dockerImage(registry_.hostPort() + "/test/keep")}, inUse));
  EXPECT_TRUE(fs::exists(keep->layers[0]));
  EXPECT_TRUE(fs::exists(keep->configPath));
  EXPECT_TRUE(fs::exists(active->layers[0]));
  EXPECT_TRUE(fs::exists(active->configPath));
  EXPECT_FALSE(fs::exists(gone->layers[0]));
  EXPECT_FALSE(fs::exists(gone->configPath));
  // Listed afterwards: the excluded image, and the one whose every layer is in use.
  auto keys = [this] {
    return store_->images().then([](const std::vector<messages::StoredImage>& v) {
      std::set<std::string> k;
      for (const auto& i : v) k.insert(i.key());
      return k;
    });
  };
  const std::set<std::string> expected = {keep->image.key(), active->image.key()};
  AWAIT_ASSERT_EQ(expected, keys());
  waitFor([&] { return fs::is_empty(storeDir_ / "gc"); });
  EXPECT_TRUE(fs::is_empty(storeDir_ / "gc"));
  // The index on disk says the same after a restart.
  restartStore();
  AWAIT_ASSERT_EQ(expected, keys());
  // Once nothing uses it, the active image goes too.
  AWAIT_READY(store_->prune({dockerImage(registry_.hostPort() + "/test/keep")}, {}));
  EXPECT_FALSE(fs::exists(active->layers[0]));
  AWAIT_ASSERT_EQ(std::set<std::string>{keep->image.key()}, keys());
}

// Mesos ROOT_..._Whiteout: layer 2 deletes a file and a directory and makes
// a directory opaque while re-adding a file in it; through overlay the
// deleted things are gone and the opaque directory holds only the new file.
TEST_F(ImageStoreTest, WhiteoutsAndOpaqueDirectoriesAcrossLayersThroughOverlay) {
  publish("test/whiteout", "latest",
          {{TarEntry::directory("etc"), TarEntry::file("etc/gone", "1"), TarEntry::file("etc/kept", "2"),
            TarEntry::directory("dir"), TarEntry::file("dir/inside", "3"), TarEntry::directory("opaque"),
            TarEntry::file("opaque/old", "4")},
           {TarEntry::file("etc/.wh.gone", ""), TarEntry::file(".wh.dir", ""), TarEntry::directory("opaque"),
            TarEntry::file("opaque/.wh..wh..opq", ""), TarEntry::file("opaque/new", "5")}});
  auto info = store_->get(dockerImage(registry_.hostPort() + "/test/whiteout"));
  AWAIT_READY(info);
  const fs::path rootfs = assemble(info->layers);
  EXPECT_FALSE(fs::exists(rootfs / "etc/gone"));
  EXPECT_EQ("2", testing::readFile(rootfs / "etc/kept"));
  EXPECT_FALSE(fs::exists(rootfs / "dir"));
  EXPECT_FALSE(fs::exists(rootfs / "opaque/old"));
  EXPECT_EQ("5", testing::readFile(rootfs / "opaque/new"));
}

// Mesos ROOT_..._Overwrite, plus file -> dir -> symlink replacements: a
// symlink to outside in one layer, then a file at that path in the next,
// must replace the symlink and never write through it.
TEST_F(ImageStoreTest, ReplacementsAcrossLayersNeverWriteThroughASymlink) {
  const fs::path outside = sandbox() / "outside";
  fs::create_directories(outside);
  publish("test/overwrite", "latest",
          {{TarEntry::file("x", "file"), TarEntry::symlink("link", outside.string()), TarEntry::file("y", "file")},
           {TarEntry::directory("x"), TarEntry::file("x/in", "dir now"), TarEntry::file("link", "a file now"),
            TarEntry::directory("link2"), TarEntry::symlink("y", "x")},
           {TarEntry::symlink("x", "link"), TarEntry::file("link2/f", "deep")}});
  auto info = store_->get(dockerImage(registry_.hostPort() + "/test/overwrite"));
  AWAIT_READY(info);
  const fs::path rootfs = assemble(info->layers);
  EXPECT_EQ("link", fs::read_symlink(rootfs / "x").string());
  EXPECT_EQ("a file now", testing::readFile(rootfs / "link"));
  EXPECT_EQ("x", fs::read_symlink(rootfs / "y").string());
  EXPECT_EQ("deep", testing::readFile(rootfs / "link2/f"));
  EXPECT_TRUE(fs::is_empty(outside));
}

// A layer that only implies a directory (no entry for it) keeps the owner
// and mode the layer below gave it.
TEST_F(ImageStoreTest, ImpliedDirectoriesTakeTheirMetadataFromTheLayersBelow) {
  TarEntry tmp = TarEntry::directory("tmp", 01777);
  TarEntry home = TarEntry::directory("home/user", 0700);
  home.uid = 1000;
  publish("test/implied", "latest",
          {{tmp, TarEntry::directory("home"), home},
           {TarEntry::file("tmp/file", "x"), TarEntry::file("home/user/f", "y")}});
  auto info = store_->get(dockerImage(registry_.hostPort() + "/test/implied"));
  AWAIT_READY(info);
  struct stat st {};
  ASSERT_EQ(0, ::lstat((fs::path(info->layers[1]) / "tmp").c_str(), &st));
  EXPECT_EQ(01777u, st.st_mode & 07777);
  ASSERT_EQ(0, ::lstat((fs::path(info->layers[1]) / "home/user").c_str(), &st));
  EXPECT_EQ(0700u, st.st_mode & 07777);
  EXPECT_EQ(1000u, st.st_uid);
}

// Two images of one `docker save` archive, picked by reference, are two
// entries: the second is never served the first's layers.
// KEP-2535: an image pulled with one requester's credentials is served
// from the store to another only if the other's credentials can still read
// its manifest; a public image costs no request at all.
TEST_F(ImageStoreTest, ACachedPrivateImageIsServedOnlyToWhoCanStillReadIt) {
  publish("test/private", "latest", {{TarEntry::file("secret", "s3cret data")}});
  registry_.requireBasic("alice", "alice-pw");
  auto as = [&](const std::string& user, const std::string& password) {
    messages::Image image = dockerImage(registry_.hostPort() + "/test/private");
    if (!user.empty()) {
      image.mutable_credentials()->set_username(user);
      image.mutable_credentials()->set_password(password);
    }
    return image;
  };
  auto alice = store_->get(as("alice", "alice-pw"));
  AWAIT_READY(alice);
  const std::size_t blobs = registry_.count("/blobs/");
  for (const auto& [user, password] : {std::pair<std::string, std::string>{"bob", "bob-pw"}, {"", ""}}) {
    SCOPED_TRACE(user.empty() ? "no credentials" : user);
    auto other = store_->get(as(user, password));
    AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, other);
    EXPECT_NE(std::string::npos, other.failure().message.find("test/private")) << other.failure().message;
  }
  const std::size_t manifests = registry_.count("/manifests/");
  AWAIT_READY(store_->get(as("alice", "alice-pw")));
  EXPECT_EQ(manifests + 1, registry_.count("/manifests/")) << "one manifest request to check alice";
  EXPECT_EQ(blobs, registry_.count("/blobs/")) << "served from the store";
  // Also after a restart (the index keeps how it was pulled).
  restartStore();
  AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, store_->get(as("bob", "bob-pw")));

  // An index written before the field existed (the previous layout): the
  // entry reads ACCESS_UNKNOWN and is checked the same.
  store_.reset();
  messages::StoredImages index;
  ASSERT_TRUE(index.ParseFromString(testing::readFile(storeDir_ / "images")));
  ASSERT_EQ(1, index.images_size());
  EXPECT_EQ(messages::StoredImage::ACCESS_CREDENTIALED, index.images(0).access());
  index.mutable_images(0)->clear_access();
  testing::writeFile(storeDir_ / "images", index.SerializeAsString());
  restartStore();
  AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, store_->get(as("", "")));
  AWAIT_READY(store_->get(as("alice", "alice-pw")));
}

// The tag moved and the old manifest is gone from the registry: the check
// finds nothing, and the image is pulled afresh with the request's own
// credentials (which may read the new one, or not).
TEST_F(ImageStoreTest, ACachedPrivateImageWhoseManifestIsGoneIsPulledAgain) {
  const Published old = publish("test/moved", "latest", {{TarEntry::file("f", "old")}});
  registry_.requireBasic("alice", "alice-pw");
  auto as = [&](const std::string& user) {
    messages::Image image = dockerImage(registry_.hostPort() + "/test/moved");
    image.mutable_credentials()->set_username(user);
    image.mutable_credentials()->set_password(user + "-pw");
    return image;
  };
  AWAIT_READY(store_->get(as("alice")));
  publish("test/moved", "latest", {{TarEntry::file("f", "new")}});
  testing::FakeRegistry::Fault gone;
  gone.match = "/manifests/" + old.manifestDigest;
  gone.status = 404;
  gone.times = 100;
  registry_.fail(gone);
  AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, store_->get(as("bob")));
  auto again = store_->get(as("alice"));
  AWAIT_READY(again);
  ASSERT_EQ(1u, again->layers.size());
  EXPECT_EQ("new", testing::readFile(fs::path(again->layers[0]) / "f"));
}

TEST_F(ImageStoreTest, ACachedPublicImageCostsNoRequest) {
  publish("test/public", "latest", {{TarEntry::file("f", "public")}});
  AWAIT_READY(store_->get(dockerImage(registry_.hostPort() + "/test/public")));
  const std::size_t before = registry_.requests().size();
  AWAIT_READY(store_->get(dockerImage(registry_.hostPort() + "/test/public")));
  restartStore();
  AWAIT_READY(store_->get(dockerImage(registry_.hostPort() + "/test/public")));
  EXPECT_EQ(before, registry_.requests().size());
}

// A bottom layer that fails while the layers above it are on their way:
// by the time the caller hears, every layer of the pull has ended and
// staging is empty (not at the next recover). A layer above that was whole
// and verified before the failure (it started before the config came, and
// the machine is slow) may stay, whole, for the next attempt; nothing else.
TEST_F(ImageStoreTest, AFailedPullLeavesNoStagingBehindWhenTheCallerHears) {
  std::vector<std::vector<TarEntry>> layers = {{TarEntry::file("base", "base")}};
  for (int i = 0; i < 3; ++i) layers.push_back({TarEntry::file("big" + std::to_string(i), randomBytes(8 << 20))});
  auto built = publish("test/corrupt-base", "latest", layers);
  registry_.putBlob(built.layerDigests[0], testing::makeTar({TarEntry::file("base", "evil")}));
  for (int round = 0; round < 3; ++round) {
    auto got = store_->get(dockerImage(registry_.hostPort() + "/test/corrupt-base"));
    AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, got);
    expectStagingEmpty();
    for (const auto& layer : fs::directory_iterator(storeDir_ / "layers")) {
      std::vector<std::string> names;
      for (const auto& file : fs::directory_iterator(layer.path() / "rootfs")) {
        names.push_back(file.path().filename().string());
      }
      ASSERT_EQ(1u, names.size()) << layer.path();
      EXPECT_TRUE(names[0] == "big0" || names[0] == "big1" || names[0] == "big2") << layer.path();
      EXPECT_EQ(randomBytes(8 << 20), testing::readFile(layer.path() / "rootfs" / names[0])) << layer.path();
    }
  }
}

// A layer within its own limit each, but an image whose layers together
// unpack past the image's (one small bomb listed many times, or many
// bombs): refused while unpacking, naming the limit, its flag and the
// image; no staging left and no index entry.
TEST_F(ImageStoreTest, AnImageIsBoundedAsAWholeNotOnlyLayerByLayer) {
  restartStore([](ImageStoreOptions& o) {
    o.limits.maxLayerBytes = 4 << 20;
    o.limits.maxImageBytes = 10 << 20;
  });
  std::vector<std::vector<TarEntry>> layers;
  for (int i = 0; i < 4; ++i) layers.push_back({TarEntry::file("f" + std::to_string(i), std::string(3 << 20, 0))});
  auto built = publish("test/bombs", "latest", layers);
  auto got = store_->get(dockerImage(registry_.hostPort() + "/test/bombs"));
  AWAIT_EXPECT_ERROR(ErrorKind::ResourceExhausted, got);
  EXPECT_NE(std::string::npos, got.failure().message.find("--max_image_bytes")) << got.failure().message;
  EXPECT_NE(std::string::npos, got.failure().message.find("test/bombs")) << got.failure().message;
  waitFor([&] { return stagingEntries().empty(); });
  expectStagingEmpty();
  auto images = store_->images();
  AWAIT_READY(images);
  EXPECT_TRUE(images->empty());

  // Three of them fit: the budget is the pull's, and a failed layer gives
  // back what it took.
  layers.pop_back();
  publish("test/three", "latest", layers);
  AWAIT_READY(store_->get(dockerImage(registry_.hostPort() + "/test/three")));
}

// Caught from the manifest alone, before any layer is asked for: more
// layers than the image may have (a tiny bomb listed thousands of times),
// a layer declaring more bytes than a layer may unpack to, or layers
// declaring more than the image may.
TEST_F(ImageStoreTest, ImageLimitsTheManifestShowsAreCheckedBeforeAnyDownload) {
  const std::string blob = testing::makeTar({TarEntry::file("f", "tiny")});
  const std::string diffId = fetcher::sha256Digest(
      testing::makeTar({TarEntry::file("f", "tiny")}, testing::TarCompression::None));
  publishBlobs("test/many", "latest", std::vector<std::string>(200, blob), std::vector<std::string>(200, diffId));
  restartStore([](ImageStoreOptions& o) { o.limits.maxImageBytes = 8 << 10; });
  publishBlobs("test/wide", "latest",
               std::vector<std::string>(3, testing::makeTar({TarEntry::file("r", randomBytes(4000))})),
               std::vector<std::string>(3, diffId));
  struct Case {
    std::string repo, says;
  };
  for (const Case& c :
       {Case{"test/many", "200 layers, more than 128 (the image layer limit, --max_image_layers)"},
        Case{"test/wide", "bytes compressed, more than 8192 (the image size limit, --max_image_bytes)"}}) {
    SCOPED_TRACE(c.repo);
    const std::size_t blobsBefore = registry_.count("/blobs/");
    auto got = store_->get(dockerImage(registry_.hostPort() + "/" + c.repo));
    AWAIT_EXPECT_ERROR(ErrorKind::ResourceExhausted, got);
    EXPECT_NE(std::string::npos, got.failure().message.find(c.says)) << got.failure().message;
    EXPECT_NE(std::string::npos, got.failure().message.find(c.repo)) << got.failure().message;
    // The config only.
    EXPECT_EQ(blobsBefore + 1, registry_.count("/blobs/"));
    expectStagingEmpty();
  }
  restartStore([](ImageStoreOptions& o) { o.limits.maxLayerBytes = 1000; });
  auto got = store_->get(dockerImage(registry_.hostPort() + "/test/wide"));
  AWAIT_EXPECT_ERROR(ErrorKind::ResourceExhausted, got);
  EXPECT_NE(std::string::npos, got.failure().message.find("(the layer size limit, --max_layer_bytes)"))
      << got.failure().message;
}

TEST_F(ImageStoreTest, TwoImagesOfOneArchiveAreTwoEntries) {
  const fs::path file = sandbox() / "two.tar";
  testing::writeSave(file, {testing::savedImage({"one:1"}, "one", {testing::TarCompression::Gzip}),
                            testing::savedImage({"two:2"}, "two", {testing::TarCompression::Gzip})});
  auto created = fetcher::DockerArchivePuller::create(runtime_);
  ASSERT_TRUE(created.isSome()) << created.error().message;
  std::shared_ptr<fetcher::Puller> archives(std::move(*created));
  ImageStoreOptions options;
  options.storeDir = (sandbox() / "archive-store").string();
  options.syncLayers = false;
  auto store = ImageStore::create(runtime_, options, [archives](const messages::Image&) { return archives; });
  ASSERT_TRUE(store.isSome()) << store.error().message;
  AWAIT_READY((*store)->recover());
  auto pick = [&](const std::string& reference) {
    messages::Image image;
    image.set_type(messages::Image::DOCKER_ARCHIVE);
    image.set_path(file.string());
    *image.mutable_reference() = *fetcher::parseImageReference(reference);
    return image;
  };
  for (const auto& [reference, marker] : {std::pair<std::string, std::string>{"one:1", "one"}, {"two:2", "two"}}) {
    auto info = (*store)->get(pick(reference));
    AWAIT_READY(info);
    ASSERT_EQ(1u, info->layers.size());
    EXPECT_EQ(marker + "0", testing::readFile(fs::path(info->layers[0]) / "layer0")) << reference;
  }
  auto images = (*store)->images();
  AWAIT_READY(images);
  EXPECT_EQ(2u, images->size());
}

// Records the order in which layer blobs are asked for (each only once
// the extractor admitted its layer) and holds one until the test lets go.
class HoldingPuller final : public fetcher::Puller {
 public:
  HoldingPuller(std::shared_ptr<fetcher::Puller> inner, std::string held)
      : inner_(std::move(inner)), held_(std::move(held)) {}
  actors::Future<messages::ResolvedImage> resolve(const messages::Image& image,
                                                  const messages::Platform& platform) override {
    return inner_->resolve(image, platform);
  }
  actors::Future<Nothing> fetchBlob(const messages::Image& image, const messages::ResolvedImage& resolved,
                                    const messages::Descriptor& blob, std::shared_ptr<fetcher::ByteSink> sink,
                                    std::shared_ptr<fetcher::BlobSources> sources) override {
    {
      std::lock_guard lock(mutex_);
      asked_.push_back(blob.digest());
      priorities_.push_back(image.priority());
    }
    if (blob.digest() != held_) return inner_->fetchBlob(image, resolved, blob, std::move(sink), std::move(sources));
    return gate_.future().then([inner = inner_, image, resolved, blob, sink, sources] {
      return inner->fetchBlob(image, resolved, blob, sink, sources);
    });
  }
  void release() { gate_.set(Nothing{}); }
  std::vector<std::string> asked() {
    std::lock_guard lock(mutex_);
    return asked_;
  }
  std::vector<int> priorities() {
    std::lock_guard lock(mutex_);
    return priorities_;
  }

 private:
  std::shared_ptr<fetcher::Puller> inner_;
  const std::string held_;
  actors::Promise<Nothing> gate_;
  std::mutex mutex_;
  std::vector<std::string> asked_;
  std::vector<int> priorities_;
};

// One slot: "big" holds it; "b" then "c" wait for it. A more urgent
// request for "c" joins its pull: c's layer goes before b's, and its
// download carries the raised priority. Nothing is pulled twice.
TEST_F(ImageStoreTest, AMoreUrgentCallerRaisesThePullItJoins) {
  auto big = publish("test/big", "latest", {{TarEntry::file("big", "big")}});
  auto b = publish("test/b", "latest", {{TarEntry::file("b", "b")}});
  auto c = publish("test/c", "latest", {{TarEntry::file("c", "c")}});
  auto holding = std::make_shared<HoldingPuller>(puller_, big.layerDigests[0]);
  puller_ = holding;
  auto extractor = std::make_shared<Extractor>(runtime_, ExtractorOptions{.slots = 1, .urgentSlots = 0});
  restartStore([&](ImageStoreOptions& options) { options.extractor = extractor; });
  auto gotBig = store_->get(dockerImage(registry_.hostPort() + "/test/big"));
  waitFor([&] { return holding->asked().size() == 1; });
  ASSERT_EQ(std::vector<std::string>{big.layerDigests[0]}, holding->asked());
  auto waiting = [&](std::size_t n) {
    waitFor([&] {
      auto load = extractor->load();
      return load.waitFor(std::chrono::seconds(5)) && load.isReady() && load->waiting == n;
    });
  };
  auto gotB = store_->get(dockerImage(registry_.hostPort() + "/test/b"));
  waiting(1);  // b's layer first in line
  // c's pull outlives its first caller: the raise still reaches it.
  auto leaving = store_->get(dockerImage(registry_.hostPort() + "/test/c"));
  auto gotC = store_->get(dockerImage(registry_.hostPort() + "/test/c"));
  waiting(2);
  leaving.discard();
  AWAIT_DISCARDED(leaving);
  messages::Image urgent = dockerImage(registry_.hostPort() + "/test/c");
  urgent.set_priority(5);
  auto gotUrgent = store_->get(urgent);
  // The raise reached the store's strand before the slot frees.
  AWAIT_READY(store_->images());
  holding->release();
  for (auto* got : {&gotBig, &gotB, &gotC, &gotUrgent}) AWAIT_READY(*got);
  EXPECT_EQ((std::vector<std::string>{big.layerDigests[0], c.layerDigests[0], b.layerDigests[0]}), holding->asked());
  EXPECT_EQ((std::vector<int>{0, 5, 0}), holding->priorities());
  EXPECT_EQ(1u, registry_.count("/v2/test/c/manifests/latest"));
  EXPECT_EQ(gotC->layers, gotUrgent->layers);
}

// Two images that share a base layer share its pull: a more urgent pull
// of the second raises the layer the first started, before b's own layer
// that waits ahead of it.
TEST_F(ImageStoreTest, AMoreUrgentPullRaisesASharedLayerAnotherPullStarted) {
  const std::vector<TarEntry> base = {TarEntry::file("base", "shared")};
  auto big = publish("test/big", "latest", {{TarEntry::file("big", "big")}});
  auto b = publish("test/b", "latest", {{TarEntry::file("b", "b")}});
  auto first = publish("test/first", "latest", {base});
  auto second = publish("test/second", "latest", {base, {TarEntry::file("top", "top")}});
  auto holding = std::make_shared<HoldingPuller>(puller_, big.layerDigests[0]);
  puller_ = holding;
  auto extractor = std::make_shared<Extractor>(runtime_, ExtractorOptions{.slots = 1, .urgentSlots = 0});
  restartStore([&](ImageStoreOptions& options) { options.extractor = extractor; });
  auto waiting = [&](std::size_t n) {
    waitFor([&] {
      auto load = extractor->load();
      return load.waitFor(std::chrono::seconds(5)) && load.isReady() && load->waiting == n;
    });
  };
  auto gotBig = store_->get(dockerImage(registry_.hostPort() + "/test/big"));
  waitFor([&] { return holding->asked().size() == 1; });
  auto gotB = store_->get(dockerImage(registry_.hostPort() + "/test/b"));
  waiting(1);
  auto gotFirst = store_->get(dockerImage(registry_.hostPort() + "/test/first"));
  waiting(2);
  messages::Image urgent = dockerImage(registry_.hostPort() + "/test/second");
  urgent.set_priority(5);
  auto gotSecond = store_->get(urgent);
  waiting(3);  // its top layer waits too, at 5
  holding->release();
  for (auto* got : {&gotBig, &gotB, &gotFirst, &gotSecond}) AWAIT_READY(*got);
  const auto asked = holding->asked();
  ASSERT_EQ(4u, asked.size());
  // The base (first's digest or second's: the same diffID) and the top
  // layer, both at 5, before b's.
  EXPECT_EQ(big.layerDigests[0], asked[0]);
  EXPECT_EQ(b.layerDigests[0], asked[3]) << "b's layer went before the raised ones";
  EXPECT_EQ((std::vector<int>{0, 5, 5, 0}), holding->priorities());
  EXPECT_EQ(gotFirst->layers[0], gotSecond->layers[0]) << "one base layer for both";
}

TEST(ImageKeyTest, NormalisesEachSource) {
  messages::Image docker;
  docker.set_type(messages::Image::DOCKER);
  *docker.mutable_reference() = *fetcher::parseImageReference("busybox");
  EXPECT_EQ("docker://docker.io/library/busybox:latest", *imageKey(docker));
  messages::Image oci;
  oci.set_type(messages::Image::OCI_LAYOUT);
  oci.set_path("/tmp/../tmp/layout");
  oci.set_layout_tag("v1");
  EXPECT_EQ("oci:/tmp/layout:v1", *imageKey(oci));
  messages::Image archive;
  archive.set_type(messages::Image::DOCKER_ARCHIVE);
  archive.set_path("/tmp/./a.tar");
  EXPECT_EQ("docker-archive:/tmp/a.tar", *imageKey(archive));
  *archive.mutable_reference() = *fetcher::parseImageReference("one:1");
  EXPECT_EQ("docker-archive:/tmp/a.tar:one:1", *imageKey(archive));
  EXPECT_EQ(2u, chainIds({"sha256:a", "sha256:b"}).size());
  EXPECT_EQ("sha256:a", chainIds({"sha256:a", "sha256:b"})[0]);
  EXPECT_EQ(fetcher::sha256Digest("sha256:a sha256:b"), chainIds({"sha256:a", "sha256:b"})[1]);
}

// imageOfKey undoes imageKey for each source (repair fetches an image
// again from its key); an archive's picked image is split off only where
// the file is one.
TEST_F(ImageStoreTest, EachKeyGivesBackTheRequestThatMadeIt) {
  const fs::path archive = sandbox() / "dir:with:colons" / "a.tar";
  fs::create_directories(archive.parent_path());
  std::ofstream(archive) << "not read here";
  for (const std::string& key :
       {std::string("docker://docker.io/library/busybox:latest"),
        std::string("docker://127.0.0.1:5000/a/b@sha256:") + std::string(64, 'e'), std::string("oci:/tmp/layout:v1"),
        std::string("oci:/tmp/dir:x/layout"), "docker-archive:" + archive.string(),
        "docker-archive:" + archive.string() + ":docker.io/library/one:1"}) {
    auto image = imageOfKey(key);
    ASSERT_TRUE(image.isSome()) << key << ": " << image.error().message;
    EXPECT_EQ(key, imageKey(*image).get()) << key;
  }
  auto picked = imageOfKey("docker-archive:" + archive.string() + ":docker.io/library/one:1");
  EXPECT_EQ(archive.string(), picked->path());
  EXPECT_EQ(messages::Image::DOCKER_ARCHIVE, picked->type());
  EXPECT_TRUE(imageOfKey("appc:busybox").isError());
}

// ---- one extraction per diff_id (store/image_store.hpp) ---------------------

// How many times the registry served any of `blobs` (one layer may have two
// blob digests: a gzip header holds a time).
std::size_t fetches(const testing::FakeRegistry& registry, const std::vector<std::string>& blobs) {
  std::set<std::string> distinct(blobs.begin(), blobs.end());
  std::size_t n = 0;
  for (const auto& blob : distinct) n += registry.count(blob);
  return n;
}

ino_t inodeOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(0, ::lstat(path.c_str(), &st)) << path;
  return st.st_ino;
}

std::string diffIdOf(const std::vector<TarEntry>& entries) {
  return fetcher::sha256Digest(testing::makeTar(entries, testing::TarCompression::None));
}

TEST_F(ImageStoreTest, ALayerOnTwoBasesIsExtractedOnceAndSharedAsItIs) {
  const std::vector<TarEntry> shared = {TarEntry::directory("opt"), TarEntry::directory("opt/big"),
                                        TarEntry::file("opt/big/blob", randomBytes(512 * 1024))};
  auto a = publish("test/on-a", "latest", {{TarEntry::file("a", "base a")}, shared});
  auto b = publish("test/on-b", "latest", {{TarEntry::file("b", "base b")}, shared});
  auto onA = store_->get(dockerImage(registry_.hostPort() + "/test/on-a"));
  AWAIT_READY(onA);
  auto onB = store_->get(dockerImage(registry_.hostPort() + "/test/on-b"));
  AWAIT_READY(onB);
  EXPECT_EQ(1u, fetches(registry_, {a.layerDigests[1], b.layerDigests[1]})) << "the shared layer is fetched once";
  EXPECT_EQ(1u, registry_.count(b.layerDigests[0]));
  // One directory, named by the diff_id, in both chains.
  ASSERT_EQ(2u, onB->layers.size());
  EXPECT_EQ(onA->layers[1], onB->layers[1]);
  EXPECT_EQ((storeDir_ / "layers" / paths::hexOf(diffIdOf(shared)) / "rootfs").string(), onB->layers[1]);
  EXPECT_EQ("", testing::readFile(fs::path(onB->layers[1]).parent_path() / "implied"));
  EXPECT_EQ(3u, static_cast<std::size_t>(
                    std::distance(fs::directory_iterator(storeDir_ / "layers"), fs::directory_iterator())));
  // Each image still sees its own base under the shared layer.
  const fs::path rootfsB = assemble(onB->layers);
  EXPECT_EQ("base b", testing::readFile(rootfsB / "b"));
  EXPECT_FALSE(fs::exists(rootfsB / "a"));
  EXPECT_EQ(512u * 1024, fs::file_size(rootfsB / "opt/big/blob"));
  // And it stays while either image does.
  AWAIT_READY(store_->remove({onA->image.key()}, {}));
  EXPECT_TRUE(fs::exists(onB->layers[1]));
  EXPECT_FALSE(fs::exists(onA->layers[0]));
  expectStagingEmpty();
}

// A layer that only implies directories (`home/user/f` without `home` or
// `home/user`) is extracted once; each chain whose layers below have those
// directories otherwise gets a variant that settles them, its files hard
// links to the seed's; chains that agree share one, and a chain that has
// none of them uses the seed.
TEST_F(ImageStoreTest, ALayerThatImpliesDirectoriesGetsAVariantPerSettlement) {
  constexpr std::size_t kBig = 1024 * 1024;
  const std::vector<TarEntry> implying = {TarEntry::file("home/user/f", "y"), TarEntry::file("top", randomBytes(kBig))};
  TarEntry user1000 = TarEntry::directory("home/user", 0700);
  user1000.uid = 1000;
  TarEntry user2000 = TarEntry::directory("home/user", 0750);
  user2000.uid = 2000;
  user2000.gid = 3;
  auto a = publish("test/v-a", "latest", {{TarEntry::directory("home"), user1000}, implying});
  auto b = publish("test/v-b", "latest", {{TarEntry::directory("home", 0711), user2000}, implying});
  // The same directories as a's, with other files beside them.
  auto c = publish("test/v-c", "latest",
                   {{TarEntry::directory("home"), user1000, TarEntry::file("home/other", "c")}, implying});
  auto d = publish("test/v-d", "latest", {{TarEntry::file("d", "no home")}, implying});
  std::map<std::string, ImageInfo> got;
  for (const std::string name : {"a", "b", "c", "d"}) {
    auto info = store_->get(dockerImage(registry_.hostPort() + "/test/v-" + name));
    AWAIT_READY(info);
    got[name] = info.get();
  }
  EXPECT_EQ(1u, fetches(registry_, {a.layerDigests[1], b.layerDigests[1], c.layerDigests[1], d.layerDigests[1]}));

  const fs::path seed = storeDir_ / "layers" / paths::hexOf(diffIdOf(implying)) / "rootfs";
  EXPECT_EQ("home\nhome/user\n", testing::readFile(seed.parent_path() / "implied"));
  EXPECT_EQ(seed.string(), got["d"].layers[1]) << "nothing below settles them: the seed serves";
  EXPECT_EQ(got["a"].layers[1], got["c"].layers[1]) << "the same settlement: one variant";
  EXPECT_NE(got["a"].layers[1], got["b"].layers[1]);
  for (const std::string name : {"a", "b"}) {
    const fs::path variant = got[name].layers[1];
    EXPECT_EQ(seed.parent_path().string() + "-",
              variant.parent_path().string().substr(0, seed.parent_path().string().size() + 1));
    EXPECT_EQ(inodeOf(seed / "home/user/f"), inodeOf(variant / "home/user/f")) << "a hard link, not a copy";
    EXPECT_EQ(inodeOf(seed / "top"), inodeOf(variant / "top"));
    EXPECT_NE(inodeOf(seed / "home/user"), inodeOf(variant / "home/user"));
    // Its record is its own, and holds.
    auto since = recordsSince(storeDir_.string());
    ASSERT_TRUE(since.isSome());
    const ContentCheck check = checkContent(variant.string(), *since);
    EXPECT_TRUE(check.ok() && !check.adopted) << check.error << (check.damage.empty() ? "" : check.damage[0].path);
  }
  struct stat st {};
  ASSERT_EQ(0, ::lstat((fs::path(got["a"].layers[1]) / "home/user").c_str(), &st));
  EXPECT_EQ(0700u, st.st_mode & 07777);
  EXPECT_EQ(1000u, st.st_uid);
  ASSERT_EQ(0, ::lstat((fs::path(got["b"].layers[1]) / "home/user").c_str(), &st));
  EXPECT_EQ(0750u, st.st_mode & 07777);
  EXPECT_EQ(2000u, st.st_uid);
  EXPECT_EQ(3u, st.st_gid);
  ASSERT_EQ(0, ::lstat((fs::path(got["b"].layers[1]) / "home").c_str(), &st));
  EXPECT_EQ(0711u, st.st_mode & 07777);
  // Through overlay, each image sees its own owner.
  ASSERT_EQ(0, ::lstat((assemble(got["b"].layers) / "home/user").c_str(), &st));
  EXPECT_EQ(2000u, st.st_uid);
  EXPECT_EQ("y", testing::readFile(assemble(got["a"].layers) / "home/user/f"));

  // A variant counts its directories on disk, not its seed's files; the
  // image's content is its seed and its variant.
  auto usage = store_->usage();
  AWAIT_READY(usage);
  ASSERT_EQ(1u, usage->bytes.count(got["a"].layers[1]));
  EXPECT_LT(usage->bytes.at(got["a"].layers[1]), 64 * 1024);
  EXPECT_GE(usage->bytes.at(seed.string()), static_cast<std::int64_t>(kBig));
  EXPECT_EQ((std::vector<std::string>{got["a"].layers[0], seed.string(), got["a"].layers[1]}),
            usage->contentOf.at(got["a"].image.key()));

  // A file damaged through a variant is its seed's too: verify names both,
  // and once both are gone the next get makes them again, whole.
  testing::writeFile(fs::path(got["a"].layers[1]) / "home/user/f", "damaged");
  auto checked = store_->verify({got["a"].image.key()});
  AWAIT_READY(checked);
  EXPECT_FALSE(checked->checks.at(seed.string()).ok());
  EXPECT_FALSE(checked->checks.at(got["a"].layers[1]).ok());
  AWAIT_READY(store_->discard({seed.string(), got["a"].layers[1], got["c"].layers[1]}));
  auto repaired = store_->get(dockerImage(registry_.hostPort() + "/test/v-a"));
  AWAIT_READY(repaired);
  EXPECT_EQ("y", testing::readFile(fs::path(repaired->layers[1]) / "home/user/f"));
  checked = store_->verify({got["a"].image.key()});
  AWAIT_READY(checked);
  for (const auto& [dir, check] : checked->checks) EXPECT_TRUE(check.ok()) << dir;
  // b's variant holds the damaged file still (it was not discarded).
  EXPECT_EQ("damaged", testing::readFile(fs::path(got["b"].layers[1]) / "home/user/f"));
  AWAIT_READY(store_->discard({got["b"].layers[1]}));
  AWAIT_READY(store_->get(dockerImage(registry_.hostPort() + "/test/v-b")));
  EXPECT_EQ("y", testing::readFile(fs::path(got["b"].layers[1]) / "home/user/f"));

  // The seed stays while a variant of it is listed, even if no image lists
  // the seed itself; the variant of the removed images goes.
  AWAIT_READY(store_->remove({got["a"].image.key(), got["c"].image.key(), got["d"].image.key()}, {}));
  EXPECT_TRUE(fs::exists(seed));
  EXPECT_TRUE(fs::exists(got["b"].layers[1]));
  EXPECT_FALSE(fs::exists(got["a"].layers[1]));
  // A restart, then a pull that places the layers again, finds b's
  // variant where it was and makes nothing.
  const ino_t variantB = inodeOf(fs::path(got["b"].layers[1]) / "home/user");
  restartStore();
  messages::Image recheck = dockerImage(registry_.hostPort() + "/test/v-b");
  recheck.set_cached(false);
  auto again = store_->get(recheck);
  AWAIT_READY(again);
  EXPECT_EQ(got["b"].layers[1], again->layers[1]);
  EXPECT_EQ(variantB, inodeOf(fs::path(again->layers[1]) / "home/user"));
  expectStagingEmpty();
}

// A seed keeps its whiteouts, whatever its place in the chain that pulled
// it first: at the base they hide nothing, higher up they must.
TEST_F(ImageStoreTest, ASeedFirstPulledAsABaseKeepsItsWhiteoutsForChainsAbove) {
  const std::vector<TarEntry> deleting = {TarEntry::directory("etc"), TarEntry::file("etc/.wh.gone", ""),
                                          TarEntry::file("etc/new", "n")};
  publish("test/alone", "latest", {deleting});
  publish("test/above", "latest",
          {{TarEntry::directory("etc"), TarEntry::file("etc/gone", "old"), TarEntry::file("etc/kept", "k")}, deleting});
  auto alone = store_->get(dockerImage(registry_.hostPort() + "/test/alone"));
  AWAIT_READY(alone);
  auto above = store_->get(dockerImage(registry_.hostPort() + "/test/above"));
  AWAIT_READY(above);
  EXPECT_EQ(alone->layers[0], above->layers[1]);
  const fs::path high = assemble(above->layers);
  EXPECT_FALSE(fs::exists(high / "etc/gone"));
  EXPECT_EQ("k", testing::readFile(high / "etc/kept"));
  const fs::path low = assemble(alone->layers);
  EXPECT_FALSE(fs::exists(fs::symlink_status(low / "etc/gone"))) << "a whiteout at the base shows as nothing";
  EXPECT_EQ("n", testing::readFile(low / "etc/new"));
}

// A layer that implies a directory, twice in one image, and a layer
// between them that deletes its file and sets the directory's mode: the
// top place counts (its file back, its variant's mode), the lower one is
// left out.
TEST_F(ImageStoreTest, ALayerTwiceInOneImageCountsAtItsTopPlace) {
  const std::vector<TarEntry> implying = {TarEntry::file("home/f", "L")};
  publish("test/twice-implied", "latest",
          {{TarEntry::directory("home", 0711)},
           implying,
           {TarEntry::directory("home", 0750), TarEntry::file("home/.wh.f", "")},
           implying});
  auto info = store_->get(dockerImage(registry_.hostPort() + "/test/twice-implied"));
  AWAIT_READY(info);
  ASSERT_EQ(4, info->image.layer_ids_size());
  EXPECT_NE(info->image.layer_ids(1), info->image.layer_ids(3)) << "two variants: settled on 0711, then on 0750";
  ASSERT_EQ(3u, info->layers.size());
  EXPECT_EQ(paths::layerRootfs(storeDir_.string(), info->image.layer_ids(3)), info->layers[2]);
  const fs::path rootfs = assemble(info->layers);
  EXPECT_EQ("L", testing::readFile(rootfs / "home/f"));
  EXPECT_EQ(fs::perms(0750), fs::status(rootfs / "home").permissions());
}

// A layer an image has twice (Docker's empty layers) is one directory,
// given once to the backend at its top place: overlay refuses a lower
// directory twice.
TEST_F(ImageStoreTest, ALayerTwiceInOneImageIsMountedOnce) {
  const std::vector<TarEntry> empty = {};
  publish("test/twice", "latest", {empty, {TarEntry::file("f", "1")}, empty, {TarEntry::file("f", "2")}, empty});
  auto info = store_->get(dockerImage(registry_.hostPort() + "/test/twice"));
  AWAIT_READY(info);
  EXPECT_EQ(5, info->image.layer_ids_size());
  ASSERT_EQ(3u, info->layers.size());
  EXPECT_EQ(paths::layerRootfs(storeDir_.string(), diffIdOf(empty)), info->layers[2]);
  EXPECT_EQ("2", testing::readFile(assemble(info->layers) / "f"));
}

// A damaged layer a container mounts is retired: no get hands it out
// again (the next one fetches it under a new name), it stays on disk while
// the container uses it, across restarts, and prune removes it after.
TEST_F(ImageStoreTest, ARetiredLayerIsNeverHandedOutAgainAndGoesOnceUnused) {
  const std::vector<TarEntry> top = {TarEntry::file("app/f", "whole")};
  auto published = publish("test/retire", "latest", {{TarEntry::directory("app", 0750)}, top});
  auto first = store_->get(dockerImage(registry_.hostPort() + "/test/retire"));
  AWAIT_READY(first);
  const std::string variant = first->layers[1];
  const std::string seed = paths::layerRootfs(storeDir_.string(), diffIdOf(top));
  ASSERT_NE(seed, variant);
  testing::writeFile(fs::path(variant) / "app/f", "damaged");
  const fs::path running = assemble(first->layers);
  AWAIT_READY(store_->retire({variant}));
  EXPECT_TRUE(fs::exists(fs::path(variant).parent_path() / "retired"));
  EXPECT_TRUE(fs::exists(fs::path(seed).parent_path() / "retired")) << "the seed goes with its variant";
  restartStore();
  auto again = store_->get(dockerImage(registry_.hostPort() + "/test/retire"));
  AWAIT_READY(again);
  EXPECT_EQ(2u, fetches(registry_, {published.layerDigests[1]}));
  EXPECT_EQ(paths::layer(storeDir_.string(), diffIdOf(top)) + "-s",
            paths::layer(storeDir_.string(), paths::seedOf(again->image.layer_ids(1))));
  EXPECT_NE(variant, again->layers[1]);
  EXPECT_EQ("whole", testing::readFile(fs::path(again->layers[1]) / "app/f"));
  EXPECT_EQ("damaged", testing::readFile(running / "app/f")) << "the container keeps what it mounts";
  AWAIT_READY(store_->prune({dockerImage(registry_.hostPort() + "/test/retire")}, {variant}));
  EXPECT_TRUE(fs::exists(variant));
  EXPECT_FALSE(fs::exists(seed)) << "no container mounts the retired seed";
  AWAIT_READY(store_->prune({dockerImage(registry_.hostPort() + "/test/retire")}, {}));
  EXPECT_FALSE(fs::exists(variant));
  EXPECT_TRUE(fs::exists(again->layers[1]));
}

// The layout before session 15: layers/<chain hex>, no implied files, the
// index listing chain ids. `info`'s layers renamed so, as that store made them.
void toFormerLayout(const fs::path& storeDir, const std::vector<ImageInfo>& infos) {
  messages::StoredImages index;
  for (const auto& info : infos) {
    std::vector<std::string> diffIds(info.image.config().diff_ids().begin(), info.image.config().diff_ids().end());
    const std::vector<std::string> chains = chainIds(diffIds);
    messages::StoredImage* former = index.add_images();
    *former = info.image;
    former->clear_layer_ids();
    for (std::size_t i = 0; i < chains.size(); ++i) {
      const fs::path layer = fs::path(info.image.layer_ids_size() > 0
                                          ? paths::layer(storeDir.string(), info.image.layer_ids(static_cast<int>(i)))
                                          : "");
      const fs::path target = storeDir / "layers" / paths::hexOf(chains[i]);
      if (layer != target && fs::exists(layer)) fs::rename(layer, target);
      fs::remove(target / "implied");
      former->add_layer_ids(chains[i]);
    }
  }
  std::string bytes;
  ASSERT_TRUE(index.SerializeToString(&bytes));
  testing::writeFile(storeDir / "images", bytes);
}

TEST_F(ImageStoreTest, LayersFromBeforeServeTheirChainsInPlaceAndAreNeverShared) {
  const std::vector<TarEntry> base = {TarEntry::directory("etc"), TarEntry::file("etc/os", "base")};
  const std::vector<TarEntry> mid = {TarEntry::directory("app"), TarEntry::file("app/bin", "mid")};
  auto old = publish("test/old", "latest", {base, mid});
  auto first = store_->get(dockerImage(registry_.hostPort() + "/test/old"));
  AWAIT_READY(first);
  store_.reset();
  toFormerLayout(storeDir_, {first.get()});
  const std::vector<std::string> chains = chainIds({diffIdOf(base), diffIdOf(mid)});
  const std::vector<std::string> former = {paths::layerRootfs(storeDir_.string(), chains[0]),
                                           paths::layerRootfs(storeDir_.string(), chains[1])};
  // A container made before the upgrade, its lower directories the old paths.
  const fs::path running = assemble(former);
  restartStore();

  // Served in place, nothing fetched again.
  const std::size_t manifestFetches = registry_.count("/v2/test/old/manifests/latest");
  auto served = store_->get(dockerImage(registry_.hostPort() + "/test/old"));
  AWAIT_READY(served);
  EXPECT_EQ(former, served->layers);
  EXPECT_EQ(manifestFetches, registry_.count("/v2/test/old/manifests/latest"));
  EXPECT_EQ(1u, registry_.count(old.layerDigests[1]));

  // The old base layer serves every image on that base.
  auto sameBase = publish("test/same-base", "latest", {base, {TarEntry::file("other", "o")}});
  auto onSameBase = store_->get(dockerImage(registry_.hostPort() + "/test/same-base"));
  AWAIT_READY(onSameBase);
  EXPECT_EQ(former[0], onSameBase->layers[0]);
  EXPECT_EQ(1u, fetches(registry_, {old.layerDigests[0], sameBase.layerDigests[0]}));

  // The old middle layer is its chain's only: on another base the layer is
  // extracted into a seed, once, which the next base then shares.
  auto other1 = publish("test/other-1", "latest", {{TarEntry::file("x", "1")}, mid});
  auto other2 = publish("test/other-2", "latest", {{TarEntry::file("x", "2")}, mid});
  auto on1 = store_->get(dockerImage(registry_.hostPort() + "/test/other-1"));
  AWAIT_READY(on1);
  auto on2 = store_->get(dockerImage(registry_.hostPort() + "/test/other-2"));
  AWAIT_READY(on2);
  EXPECT_EQ(paths::layerRootfs(storeDir_.string(), diffIdOf(mid)), on1->layers[1]);
  EXPECT_EQ(on1->layers[1], on2->layers[1]);
  EXPECT_EQ(2u, fetches(registry_, {old.layerDigests[1], other1.layerDigests[1], other2.layerDigests[1]}));

  // The old base's diff_id higher up: a seed under its second name.
  auto high = publish("test/base-high", "latest", {{TarEntry::file("z", "z")}, base});
  auto onHigh = store_->get(dockerImage(registry_.hostPort() + "/test/base-high"));
  AWAIT_READY(onHigh);
  EXPECT_EQ(paths::layer(storeDir_.string(), diffIdOf(base)) + "-s/rootfs", onHigh->layers[1]);
  EXPECT_EQ("base", testing::readFile(fs::path(onHigh->layers[1]) / "etc/os"));

  // The container made before still reads through the old paths; they stay
  // while it uses them, and go once it is gone and no image lists them.
  EXPECT_EQ("mid", testing::readFile(running / "app/bin"));
  const std::set<std::string> inUse(former.begin(), former.end());
  AWAIT_READY(store_->remove({served->image.key(), onSameBase->image.key()}, inUse));
  EXPECT_TRUE(fs::exists(former[1]));
  EXPECT_EQ("base", testing::readFile(running / "etc/os"));
  AWAIT_READY(store_->prune({dockerImage(registry_.hostPort() + "/test/other-1")}, {}));
  EXPECT_FALSE(fs::exists(former[0]));
  EXPECT_FALSE(fs::exists(former[1]));
  EXPECT_TRUE(fs::exists(on1->layers[1]));
  expectStagingEmpty();
}

}  // namespace
}  // namespace prov::store
