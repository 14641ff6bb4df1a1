#pragma once

// ImageStoreTest: a store under the test's sandbox, pulling from a fake
// registry that stands in for docker.io too (hubUrl), with helpers to
// publish images built from tar entries and to assemble layers with overlay.

#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "backend/backend.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/manifest.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "store/image_store.hpp"
#include "testkit/image_builder.hpp"
#include "tests/support/await.hpp"
#include "tests/support/fake_registry.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::store {

struct Published {
  std::string manifestDigest;
  std::string configDigest;
  std::string configJson;
  std::vector<std::string> layerDigests;
};

class ImageStoreTest : public testing::TemporaryDirectoryTest {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    storeDir_ = sandbox() / "store";
    fetcher::RegistryOptions options;
    options.hubUrl = registry_.url();
    options.retry = fetcher::RetryPolicy{.maxAttempts = 2,
                                         .initialDelay = std::chrono::milliseconds(1),
                                         .maxDelay = std::chrono::milliseconds(5),
                                         .multiplier = 2.0,
                                         .jitter = 0.1};
    auto puller = fetcher::RegistryPuller::create(runtime_, options, 4);
    ASSERT_TRUE(puller.isSome()) << puller.error().message;
    puller_ = std::shared_ptr<fetcher::Puller>(std::move(*puller));
    restartStore();
  }

  void TearDown() override {
    for (const auto& [rootfs, backendDir] : assembled_) {
      auto destroyed = overlay_->destroy(rootfs, backendDir);
      destroyed.waitFor(std::chrono::seconds(15));
    }
    store_.reset();
    TemporaryDirectoryTest::TearDown();
  }

  // A new store object over the same directory, recovered.
  void restartStore(const std::function<void(ImageStoreOptions&)>& adjust = {}) {
    store_.reset();
    ImageStoreOptions options;
    options.storeDir = storeDir_.string();
    options.syncLayers = false;
    if (adjust) adjust(options);
    auto puller = puller_;
    auto store = ImageStore::create(runtime_, options, [puller](const messages::Image&) { return puller; });
    ASSERT_TRUE(store.isSome()) << store.error().message;
    store_ = std::move(*store);
    AWAIT_READY(store_->recover());
  }

  // A schema 2 image of gzip layers on the fake registry.
  Published publish(const std::string& repo, const std::string& tag,
                    const std::vector<std::vector<testing::TarEntry>>& layers, bool wrongDiffId = false) {
    std::vector<std::string> blobs, diffIds;
    for (const auto& entries : layers) {
      diffIds.push_back(fetcher::sha256Digest(testing::makeTar(entries, testing::TarCompression::None)));
      // One blob per tree, as a registry holds a layer pushed again: a gzip
      // header holds a time, so a second compression might differ.
      std::string& blob = gzipOf_[diffIds.back()];
      if (blob.empty()) blob = testing::makeTar(entries, testing::TarCompression::Gzip);
      blobs.push_back(blob);
    }
    if (wrongDiffId) diffIds.back() = fetcher::sha256Digest("not this layer");
    return publishBlobs(repo, tag, blobs, diffIds);
  }

  // An image whose one layer blob is `blob` (any bytes), its diffID that of `entries`.
  Published publishRaw(const std::string& repo, const std::string& blob,
                       const std::vector<testing::TarEntry>& entries) {
    return publishBlobs(repo, "latest", {blob},
                        {fetcher::sha256Digest(testing::makeTar(entries, testing::TarCompression::None))});
  }

  Published publishBlobs(const std::string& repo, const std::string& tag, const std::vector<std::string>& blobs,
                         const std::vector<std::string>& diffIds) {
    Published p;
    std::string layerList, diffIdList;
    for (std::size_t i = 0; i < blobs.size(); ++i) {
      p.layerDigests.push_back(registry_.addBlob(blobs[i]));
      layerList += (i ? "," : "") +
                   descriptor(fetcher::mediatype::kDockerLayerGzip, p.layerDigests.back(), blobs[i].size());
      diffIdList += (i ? ",\"" : "\"") + diffIds[i] + "\"";
    }
    p.configJson = R"({"architecture":")" + fetcher::hostPlatform().architecture() +
                   R"(","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]},)"
                   R"("rootfs":{"type":"layers","diff_ids":[)" +
                   diffIdList + "]}}";
    p.configDigest = registry_.addBlob(p.configJson);
    const std::string manifest = R"({"schemaVersion":2,"mediaType":")" +
                                 std::string(fetcher::mediatype::kDockerSchema2) + R"(","config":)" +
                                 descriptor(fetcher::mediatype::kDockerConfig, p.configDigest, p.configJson.size()) +
                                 R"(,"layers":[)" + layerList + "]}";
    p.manifestDigest = registry_.putManifest(repo, tag, manifest, fetcher::mediatype::kDockerSchema2);
    return p;
  }

  static std::string descriptor(const std::string& mediaType, const std::string& digest, std::size_t size) {
    return R"({"mediaType":")" + mediaType + R"(","digest":")" + digest + R"(","size":)" + std::to_string(size) + "}";
  }

  static messages::Image dockerImage(const std::string& reference) {
    messages::Image image;
    image.set_type(messages::Image::DOCKER);
    auto parsed = fetcher::parseImageReference(reference);
    EXPECT_TRUE(parsed.isSome()) << reference;
    if (parsed.isSome()) *image.mutable_reference() = *parsed;
    return image;
  }

  std::vector<std::string> stagingEntries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(storeDir_ / "staging")) names.push_back(e.path().string());
    return names;
  }

  void expectStagingEmpty() const { EXPECT_EQ(std::vector<std::string>{}, stagingEntries()); }

  static void waitFor(const std::function<bool()>& condition,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(15000)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  static std::string randomBytes(std::size_t n) {
    std::mt19937 random(7);
    std::string bytes(n, '\0');
    for (auto& c : bytes) c = static_cast<char>(random());
    return bytes;
  }

  // The layers mounted with overlay under the sandbox (unmounted in TearDown).
  std::filesystem::path assemble(const std::vector<std::string>& layers) {
    if (!overlay_) {
      auto backend = backend::createBackend(runtime_, backend::kOverlay);
      EXPECT_TRUE(backend.isSome()) << backend.error().message;
      overlay_ = std::move(*backend);
    }
    const auto rootfs = sandbox() / ("rootfs" + std::to_string(assembled_.size()));
    const auto backendDir = sandbox() / "backend";
    std::filesystem::create_directories(backendDir);
    auto provisioned = overlay_->provision(layers, rootfs.string(), backendDir.string());
    EXPECT_TRUE(provisioned.waitFor(std::chrono::seconds(15)) && provisioned.isReady());
    assembled_.emplace_back(rootfs.string(), backendDir.string());
    return rootfs;
  }

  actors::Runtime runtime_;
  testing::FakeRegistry registry_;
  std::map<std::string, std::string> gzipOf_;  // publish's blobs, by diffID
  std::filesystem::path storeDir_;
  std::shared_ptr<fetcher::Puller> puller_;
  std::unique_ptr<ImageStore> store_;
  std::unique_ptr<backend::Backend> overlay_;
  std::vector<std::pair<std::string, std::string>> assembled_;
};

}  // namespace prov::store
