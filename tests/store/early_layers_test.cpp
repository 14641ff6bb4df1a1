// A pull starts the layers its manifest names while the config is on its
// way, when the store can tell from the manifest alone that it lacks them
// (image_store.cpp: speculate). What must hold around that: the policy
// first, a layer the store has never fetched again, the diffID still
// checked, and nothing left behind when the pull fails.

#include <fstream>

#include "store/paths.hpp"
#include "store/trust.hpp"
#include "testkit/files.hpp"
#include "testkit/forwarding_puller.hpp"
#include "tests/store/store_fixture.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using testing::TarEntry;

class EarlyLayersTest : public ImageStoreTest {
 protected:
  ImageInfo pulled(const std::string& repo) {
    auto got = store_->get(dockerImage(registry_.hostPort() + "/" + repo));
    got.waitFor(std::chrono::seconds(30));
    EXPECT_TRUE(got.isReady()) << repo << ": " << (got.isFailed() ? got.failure().message : "not ready");
    return got.isReady() ? got.get() : ImageInfo{};
  }

  std::vector<messages::StoredImage> indexed() {
    auto images = store_->images();
    images.waitFor(std::chrono::seconds(15));
    EXPECT_TRUE(images.isReady());
    return images.isReady() ? images.get() : std::vector<messages::StoredImage>{};
  }

  // `image`'s config answered only once each of `layers` was asked for.
  void holdConfigUntilAsked(const Published& image, const std::vector<std::size_t>& layers) {
    for (std::size_t i : layers) registry_.holdUntilAsked(image.configDigest, image.layerDigests[i]);
  }

  const std::vector<TarEntry> base_ = {TarEntry::file("base", std::string(64 * 1024, 'b'))};
  const std::vector<TarEntry> top_ = {TarEntry::file("top", "top")};
  const std::vector<TarEntry> mid_ = {TarEntry::file("mid", "mid")};
};

// The registry answers the config only once both layers were asked for: a
// pull that waited for the config before its layers would get a 504 after
// 10 s, and fail.
TEST_F(EarlyLayersTest, TheLayersAreAskedForBeforeTheConfigIsAnswered) {
  auto built = publish("test/early", "latest", {base_, top_});
  holdConfigUntilAsked(built, {0, 1});
  const ImageInfo info = pulled("test/early");
  ASSERT_EQ(2u, info.layers.size());
  EXPECT_EQ(std::string(64 * 1024, 'b'), testing::readFile(fs::path(info.layers[0]) / "base"));
  EXPECT_EQ("top", testing::readFile(fs::path(info.layers[1]) / "top"));
  EXPECT_EQ(1u, registry_.count(built.layerDigests[0]));
  EXPECT_EQ(1u, registry_.count(built.layerDigests[1]));
  EXPECT_EQ(1u, registry_.count(built.configDigest));
  // The index remembers the blobs, for the next pull to tell from a manifest.
  const auto images = indexed();
  ASSERT_EQ(1u, images.size());
  EXPECT_EQ(built.layerDigests,
            std::vector<std::string>(images[0].layer_digests().begin(), images[0].layer_digests().end()));
  expectStagingEmpty();
}

// A second image on the same base: its own layers start early (its config
// is held until both are asked for), the base is not fetched again.
TEST_F(EarlyLayersTest, ALayerTheStoreHasIsNotFetchedAgain) {
  auto first = publish("test/first", "latest", {base_, top_});
  pulled("test/first");
  auto second = publish("test/second", "latest", {base_, {TarEntry::file("other", "other")}, mid_});
  ASSERT_EQ(first.layerDigests[0], second.layerDigests[0]);
  holdConfigUntilAsked(second, {1, 2});
  const ImageInfo info = pulled("test/second");
  ASSERT_EQ(3u, info.layers.size());
  EXPECT_EQ("other", testing::readFile(fs::path(info.layers[1]) / "other"));
  EXPECT_EQ(1u, registry_.count(first.layerDigests[0])) << "the base was fetched again";
  EXPECT_EQ(1u, registry_.count(second.layerDigests[1]));
}

// A prune forgets the blobs of the layers it removed: pulled again (image
// GC took it, then a pod needs it), the image's layers start before its
// config again, their config held until both are asked for. A layer an
// image kept is still known: not fetched again.
TEST_F(EarlyLayersTest, AfterAPruneTheLayersItRemovedStartEarlyAgain) {
  auto kept = publish("test/kept", "latest", {base_, top_});
  auto gone = publish("test/gone", "latest", {base_, mid_, {TarEntry::file("other", "other")}});
  ASSERT_EQ(kept.layerDigests[0], gone.layerDigests[0]);
  pulled("test/kept");
  pulled("test/gone");
  AWAIT_READY(store_->prune({dockerImage(registry_.hostPort() + "/test/kept")}, {}));
  ASSERT_EQ(1u, indexed().size());
  holdConfigUntilAsked(gone, {1, 2});
  const ImageInfo info = pulled("test/gone");
  ASSERT_EQ(3u, info.layers.size());
  EXPECT_EQ("mid", testing::readFile(fs::path(info.layers[1]) / "mid"));
  EXPECT_EQ(1u, registry_.count(kept.layerDigests[0])) << "the base was fetched again";
  EXPECT_EQ(2u, registry_.count(gone.layerDigests[1]));
  EXPECT_EQ(2u, registry_.count(gone.layerDigests[2]));
  expectStagingEmpty();
}

// A registry over TLS as the store sees it: the fake registry's puller,
// saying that a new connection needs a handshake.
class TlsPuller final : public testing::ForwardingPuller {
 public:
  using ForwardingPuller::ForwardingPuller;
  bool connectsPlain(const messages::ResolvedImage&) override { return false; }
};

// Over plain http (the fake registry, found not to speak TLS by the
// manifest's request), one layer to fetch starts early too: its new
// connection costs no handshake. The config is held until it is asked for.
TEST_F(EarlyLayersTest, OneLayerOverPlainHttpStartsEarly) {
  auto built = publish("test/alone", "latest", {base_});
  holdConfigUntilAsked(built, {0});
  const ImageInfo info = pulled("test/alone");
  ASSERT_EQ(1u, info.layers.size());
  EXPECT_EQ(std::string(64 * 1024, 'b'), testing::readFile(fs::path(info.layers[0]) / "base"));
  EXPECT_EQ(1u, registry_.count(built.layerDigests[0]));
  // The manifest and config on one http connection, the layer on another
  // (a first one tries TLS, as on any registry on 127.0.0.1).
  EXPECT_EQ(2u, registry_.connectionsAccepted() - registry_.notHttpConnections());
  expectStagingEmpty();
}

// Over TLS, one layer to fetch waits for the config, and then takes the
// config's connection: started early, it would open a second one, whose
// handshake costs more than the config's round trip.
TEST_F(EarlyLayersTest, OneLayerOverTlsWaitsForTheConfigAndTakesItsConnection) {
  puller_ = std::make_shared<TlsPuller>(puller_);
  restartStore();
  auto http = [&] { return registry_.connectionsAccepted() - registry_.notHttpConnections(); };
  // Every blob body a byte a millisecond: a layer started early would ask
  // while the config is still coming, on a connection of its own; and two
  // layers never finish in time to hand one connection on.
  registry_.trickle(1);
  publish("test/alone", "latest", {base_});
  const ImageInfo info = pulled("test/alone");
  ASSERT_EQ(1u, info.layers.size());
  EXPECT_EQ(1u, http());
  // Two: both start early, each on a connection of its own; the manifest
  // and the config take the first one again.
  auto two = publish("test/two", "latest", {top_, mid_});
  holdConfigUntilAsked(two, {0, 1});
  pulled("test/two");
  EXPECT_EQ(3u, http());
}

// An index entry written before the blobs were kept: its layers' blobs are
// unknown, so no layer starts before its config (which would fetch the
// base again: the config trickles in, so a layer started early would be
// asked for first); once a pull has listed the base's blob, layers start
// early again.
TEST_F(EarlyLayersTest, AnIndexEntryWithoutBlobDigestsHoldsLayersUntilTheConfig) {
  const std::vector<TarEntry> small = {TarEntry::file("base", "base")};
  auto old = publish("test/old", "latest", {small});
  pulled("test/old");
  {
    // The entry as a store before session 23 wrote it.
    const fs::path index = storeDir_ / "images";
    messages::StoredImages images;
    ASSERT_TRUE(images.ParseFromString(testing::readFile(index)));
    ASSERT_EQ(1, images.images_size());
    ASSERT_EQ(1, images.images(0).layer_digests_size());
    images.mutable_images(0)->clear_layer_digests();
    std::string bytes;
    ASSERT_TRUE(images.SerializeToString(&bytes));
    testing::writeFile(index, bytes);
  }
  restartStore();
  auto next = publish("test/next", "latest", {small, {TarEntry::file("next", "next")}, mid_});
  registry_.trickle(1);  // the config (and every blob): a byte a millisecond
  pulled("test/next");
  registry_.trickle(0);
  EXPECT_EQ(1u, registry_.count(old.layerDigests[0])) << "the base was fetched again";
  ASSERT_EQ(old.layerDigests[0], next.layerDigests[0]);
  // The old entry stays as it was; the new one has its blobs.
  for (const auto& image : indexed()) {
    if (image.key().find("test/old") != std::string::npos) {
      EXPECT_EQ(0, image.layer_digests_size());
    } else {
      EXPECT_EQ(3, image.layer_digests_size()) << image.key();
    }
  }

  // The base's blob is known now (test/next lists it): layers start early.
  restartStore();
  auto third = publish("test/third", "latest", {small, {TarEntry::file("last", "last")}, top_});
  holdConfigUntilAsked(third, {1, 2});
  pulled("test/third");
  EXPECT_EQ(1u, registry_.count(old.layerDigests[0]));
}

// A layer the store has under another blob digest (compressed again: here
// another time in the gzip header) is unknown from the manifest, so it
// starts early; the config then names a diffID the store has, and the
// early one is dropped: one layer on disk, nothing left in staging.
TEST_F(EarlyLayersTest, ALayerStoredUnderAnotherBlobIsDroppedOnceTheConfigComes) {
  auto first = publish("test/gzip-a", "latest", {base_});
  const ImageInfo a = pulled("test/gzip-a");
  std::string again = testing::makeTar(base_, testing::TarCompression::Gzip);
  again[4] = static_cast<char>(again[4] ^ 0x5a);  // MTIME: the same tar, other bytes
  const auto diffId = fetcher::sha256Digest(testing::makeTar(base_, testing::TarCompression::None));
  auto second = publishBlobs("test/gzip-b", "latest", {again, testing::makeTar(top_, testing::TarCompression::Gzip)},
                             {diffId, fetcher::sha256Digest(testing::makeTar(top_, testing::TarCompression::None))});
  ASSERT_NE(first.layerDigests[0], second.layerDigests[0]);
  holdConfigUntilAsked(second, {0, 1});
  const ImageInfo b = pulled("test/gzip-b");
  ASSERT_EQ(2u, b.layers.size());
  EXPECT_EQ(a.layers[0], b.layers[0]);
  EXPECT_EQ(2u, static_cast<std::size_t>(
                    std::distance(fs::directory_iterator(storeDir_ / "layers"), fs::directory_iterator())));
  waitFor([&] { return stagingEntries().empty(); });
  expectStagingEmpty();
}

// The config names another diffID than the layer's tar has: the layer
// started early is not committed, and the pull says so as a pull that
// waited for the config would.
TEST_F(EarlyLayersTest, ALayerStartedEarlyIsStillCheckedAgainstTheConfig) {
  auto built = publish("test/lying", "latest", {base_, top_}, /*wrongDiffId=*/true);
  holdConfigUntilAsked(built, {0, 1});
  auto got = store_->get(dockerImage(registry_.hostPort() + "/test/lying"));
  AWAIT_ASSERT_ERROR(ErrorKind::DigestMismatch, got);
  EXPECT_NE(std::string::npos, got.failure().message.find("but the image config's diff_ids say sha256:"))
      << got.failure().message;
  EXPECT_NE(std::string::npos, got.failure().message.find(built.layerDigests[1])) << got.failure().message;
  expectStagingEmpty();
  // The base, whole and checked, may stay for the next attempt; the top,
  // whose diffID was wrong, is nowhere.
  for (const auto& layer : fs::directory_iterator(storeDir_ / "layers")) {
    EXPECT_EQ(paths::hexOf(fetcher::sha256Digest(testing::makeTar(base_, testing::TarCompression::None))),
              layer.path().filename().string());
  }
  EXPECT_TRUE(indexed().empty());
}

// Two images that share two new layers, pulled at once: A starts both
// early; B, whose config comes first (A's waits until B has asked for its
// own third layer, which B fetches after its config), takes A's two, and A
// then joins B's. Each blob is fetched once.
TEST_F(EarlyLayersTest, TwoPullsShareTheLayersOneStartedEarly) {
  const std::vector<TarEntry> shared = {TarEntry::file("shared", std::string(32 * 1024, 's'))};
  auto a = publish("test/share-a", "latest", {base_, shared});
  auto b = publish("test/share-b", "latest", {base_, shared, top_});
  holdConfigUntilAsked(a, {0, 1});
  registry_.holdUntilAsked(a.configDigest, b.layerDigests[2]);
  auto gotA = store_->get(dockerImage(registry_.hostPort() + "/test/share-a"));
  waitFor([&] { return registry_.count(a.layerDigests[0]) == 1 && registry_.count(a.layerDigests[1]) == 1; });
  ASSERT_EQ(1u, registry_.count(a.layerDigests[1])) << "A started its layers early";
  auto gotB = store_->get(dockerImage(registry_.hostPort() + "/test/share-b"));
  AWAIT_READY(gotA);
  AWAIT_READY(gotB);
  EXPECT_EQ(1u, registry_.count(a.layerDigests[0]));
  EXPECT_EQ(1u, registry_.count(a.layerDigests[1]));
  EXPECT_EQ(1u, registry_.count(b.layerDigests[2]));
  EXPECT_EQ(gotA->layers[1], gotB->layers[1]);
  expectStagingEmpty();
}

// Every caller leaves while the layers started early are downloading (a
// byte a millisecond) and the config is held: they stop, their staging
// goes, nothing is committed or indexed.
TEST_F(EarlyLayersTest, ADiscardedPullStopsTheLayersItStartedEarly) {
  auto built = publish("test/left", "latest", {{TarEntry::file("big", randomBytes(64 * 1024))}, base_});
  registry_.holdUntilAsked(built.configDigest, "/never-asked");
  registry_.trickle(1);
  auto got = store_->get(dockerImage(registry_.hostPort() + "/test/left"));
  waitFor([&] { return registry_.count(built.layerDigests[0]) == 1 && registry_.count(built.layerDigests[1]) == 1; });
  ASSERT_EQ(1u, registry_.count(built.layerDigests[1]));
  waitFor([&] { return stagingEntries().size() == 2; });
  ASSERT_EQ(2u, stagingEntries().size());
  got.discard();
  AWAIT_DISCARDED(got);
  waitFor([&] { return stagingEntries().empty(); });
  expectStagingEmpty();
  EXPECT_TRUE(fs::is_empty(storeDir_ / "layers"));
  EXPECT_TRUE(indexed().empty());
}

// The config fails while the layer started early is still downloading (one
// byte a millisecond): by the time the caller hears, the download has
// stopped and its staging is gone.
TEST_F(EarlyLayersTest, AConfigThatFailsStopsTheLayersStartedEarly) {
  auto built = publish("test/noconfig", "latest", {{TarEntry::file("big", randomBytes(64 * 1024))}, top_});
  holdConfigUntilAsked(built, {0, 1});
  registry_.fail({built.configDigest, 500, {}, "no config today", 10});
  registry_.trickle(1);
  auto got = store_->get(dockerImage(registry_.hostPort() + "/test/noconfig"));
  AWAIT_FAILED_FOR(got, std::chrono::seconds(30));
  EXPECT_NE(std::string::npos, got.failure().message.find("test/noconfig")) << got.failure().message;
  EXPECT_EQ(1u, registry_.count(built.layerDigests[0]));
  expectStagingEmpty();
  EXPECT_TRUE(fs::is_empty(storeDir_ / "layers"));
  EXPECT_TRUE(indexed().empty());
}

// A policy that refuses the image: no layer is asked for, not even while
// the config trickles in (a layer started before the verdict would be).
TEST_F(EarlyLayersTest, NoLayerStartsBeforeThePolicyAcceptsTheManifest) {
  auto built = publish("test/refused", "latest", {base_, top_});
  std::ofstream(sandbox() / "policy.json") << R"({"default":[{"type":"reject"}]})";
  fs::create_directories(sandbox() / "registries.d");
  auto trust = Trust::load(runtime_,
                           TrustOptions{(sandbox() / "policy.json").string(), (sandbox() / "registries.d").string(), "",
                                        std::chrono::seconds(3600)},
                           nullptr);
  ASSERT_TRUE(trust.isSome()) << trust.error().message;
  restartStore([&](ImageStoreOptions& options) { options.trust = *trust; });
  registry_.trickle(1);
  auto got = store_->get(dockerImage(registry_.hostPort() + "/test/refused"));
  AWAIT_FAILED_FOR(got, std::chrono::seconds(30));
  EXPECT_EQ(ErrorKind::Forbidden, got.failure().kind) << got.failure().message;
  EXPECT_EQ(0u, registry_.count(built.layerDigests[0]));
  EXPECT_EQ(0u, registry_.count(built.layerDigests[1]));
  expectStagingEmpty();
}

}  // namespace
}  // namespace prov::store
