// The extractor actor (store/extractor.hpp) on its own: its bound, its
// order, discards, failures, and both formats. The feeds here are held by
// the test, which decides when each one's bytes arrive and when it ends.

#include "store/extractor.hpp"

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/runtime.hpp"
#include "fetcher/digest.hpp"
#include "testkit/files.hpp"
#include "testkit/image_builder.hpp"
#include "tests/store/appc_fixture.hpp"
#include "tests/support/await.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using actors::Future;
using actors::Promise;
using messages::ExtractRequest;
using messages::ExtractResult;
using testing::TarEntry;

constexpr const char* kGzipLayer = "application/vnd.oci.image.layer.v1.tar+gzip";

// Feeds the test holds: each records its admission and waits for the test.
class HeldFeeds {
 public:
  struct Admitted {
    std::string name;
    std::string stagingDir;
    std::shared_ptr<fetcher::ByteSink> sink;
    std::shared_ptr<Promise<Fed>> done;
  };

  Feed feed(const std::string& name) {
    return [this, name](const std::string& dir, const std::shared_ptr<fetcher::ByteSink>& sink) {
      auto done = std::make_shared<Promise<Fed>>();
      std::lock_guard lock(mutex_);
      admitted_.push_back({name, dir, sink, done});
      return done->future();
    };
  }

  // The i-th admitted (0-based), once it is; false after 15 s.
  bool waitFor(std::size_t i, Admitted& out) {
    const auto deadline = std::chrono::steady_clock::now() + testing::kDefaultAwait;
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (admitted_.size() > i) {
          out = admitted_[i];
          return true;
        }
      }
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  std::size_t count() const {
    std::lock_guard lock(mutex_);
    return admitted_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Admitted> admitted_;
};

class ExtractorTest : public testing::TemporaryDirectoryTest {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    staging_ = sandbox() / "staging";
    fs::create_directories(staging_);
  }

  // A gzip layer holding `entries`, and a request for it.
  ExtractRequest layerRequest(const std::string& blob, const std::string& tar, int priority = 0) const {
    ExtractRequest request;
    request.set_format(ExtractRequest::LAYER);
    request.set_what("layer '" + fetcher::sha256Digest(blob) + "'");
    request.mutable_layer()->set_media_type(kGzipLayer);
    request.mutable_layer()->set_digest(fetcher::sha256Digest(blob));
    request.mutable_layer()->set_size(static_cast<std::int64_t>(blob.size()));
    request.set_expected_diff_id(fetcher::sha256Digest(tar));
    request.set_staging_parent(staging_.string());
    request.set_bottom_layer(true);
    request.set_priority(priority);
    return request;
  }

  // Writes `blob` into an admitted feed and ends it.
  static void finish(const HeldFeeds::Admitted& admitted, const std::string& blob) {
    AWAIT_READY(admitted.sink->write(blob));
    admitted.done->set(Fed{});
  }

  std::size_t stagingEntries() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(staging_), fs::directory_iterator()));
  }

  void waitForEmptyStaging() const {
    const auto deadline = std::chrono::steady_clock::now() + testing::kDefaultAwait;
    while (stagingEntries() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    EXPECT_EQ(0u, stagingEntries()) << testing::treeOf(staging_).size() << " paths left in staging";
  }

  // The extractor's load once `ready` says so (or as it is after 15 s).
  static Extractor::Load loadWhen(Extractor& extractor, const std::function<bool(const Extractor::Load&)>& ready) {
    const auto deadline = std::chrono::steady_clock::now() + testing::kDefaultAwait;
    Extractor::Load last;
    do {
      auto load = extractor.load();
      if (!load.waitFor(testing::kDefaultAwait) || !load.isReady()) break;
      last = load.get();
    } while (!ready(last) && std::chrono::steady_clock::now() < deadline);
    return last;
  }

  actors::Runtime runtime_{actors::Runtime::Options{.workerThreads = 2, .blockingThreads = 12}};
  fs::path staging_;
};

TEST_F(ExtractorTest, ManyConcurrentRequestsRespectTheBound) {
  Extractor extractor(runtime_, ExtractorOptions{.slots = 3});
  HeldFeeds feeds;
  const std::string tar = testing::makeTar({TarEntry::file("etc/os", "one"), TarEntry::symlink("bin/sh", "busybox")},
                                           testing::TarCompression::None);
  const std::string blob = testing::makeTar({TarEntry::file("etc/os", "one"), TarEntry::symlink("bin/sh", "busybox")});
  std::vector<Future<ExtractResult>> results;
  for (int i = 0; i < 12; ++i) {
    results.push_back(extractor.extract(layerRequest(blob, tar), feeds.feed("r" + std::to_string(i))));
  }
  // Every request arrived: three run, nine wait.
  const Extractor::Load arrived = loadWhen(
      extractor, [&](const Extractor::Load& l) { return l.running + l.waiting == results.size(); });
  EXPECT_EQ(3u, arrived.running);
  EXPECT_EQ(9u, arrived.waiting);
  std::size_t finished = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    HeldFeeds::Admitted admitted;
    ASSERT_TRUE(feeds.waitFor(i, admitted)) << "request " << i << " was never admitted";
    // Never more admitted than the bound allows beside the ones finished.
    EXPECT_LE(feeds.count(), finished + 3) << "after " << finished << " finished";
    auto load = extractor.load();
    AWAIT_READY(load);
    EXPECT_EQ(3u, load->slots);
    EXPECT_LE(load->running, 3u);
    finish(admitted, blob);
    auto& result = results[i];
    AWAIT_READY(result);
    ++finished;
    EXPECT_EQ(fetcher::sha256Digest(tar), result->content_id());
    EXPECT_EQ(admitted.stagingDir, result->staging_dir());
    EXPECT_EQ("one", testing::readFile(fs::path(result->rootfs()) / "etc/os"));
    EXPECT_EQ(blob.size(), result->blob_bytes());
    EXPECT_EQ(2u, result->entries());
    EXPECT_EQ(std::vector<std::string>({"bin", "etc"}),
              std::vector<std::string>(result->implied_dirs().begin(), result->implied_dirs().end()));
  }
  EXPECT_EQ(12u, feeds.count());
  // The last slot goes back just after its result completed.
  const Extractor::Load idle = loadWhen(extractor, [](const Extractor::Load& l) { return l.running == 0; });
  EXPECT_EQ(0u, idle.running);
  EXPECT_EQ(0u, idle.waiting);
  // The staged trees are the callers' now: the extractor left them.
  EXPECT_EQ(12u, stagingEntries());
}

TEST_F(ExtractorTest, ADiscardedRequestFreesItsSlotAndItsStaging) {
  Extractor extractor(runtime_, ExtractorOptions{.slots = 1});
  HeldFeeds feeds;
  std::vector<TarEntry> entries;
  for (int i = 0; i < 200; ++i) entries.push_back(TarEntry::file("f" + std::to_string(i), std::string(4096, 'x')));
  const std::string tar = testing::makeTar(entries, testing::TarCompression::None);
  const std::string blob = testing::makeTar(entries);
  auto running = extractor.extract(layerRequest(blob, tar), feeds.feed("running"));
  auto second = extractor.extract(layerRequest(blob, tar), feeds.feed("second"));
  auto waiting = extractor.extract(layerRequest(blob, tar), feeds.feed("waiting"));
  HeldFeeds::Admitted first;
  ASSERT_TRUE(feeds.waitFor(0, first));
  AWAIT_READY(first.sink->write(std::string_view(blob).substr(0, blob.size() / 2)));  // half of it arrived
  EXPECT_TRUE(fs::exists(first.stagingDir));

  waiting.discard();  // while it waits: dropped, its feed never called
  running.discard();  // while it runs: its feed and extraction stop
  AWAIT_DISCARDED(running);
  EXPECT_TRUE(first.done->future().hasDiscard()) << "the feed was told to stop";
  EXPECT_FALSE(fs::exists(first.stagingDir)) << "removed before the caller heard";

  HeldFeeds::Admitted next;
  ASSERT_TRUE(feeds.waitFor(1, next)) << "the slot was not freed";
  EXPECT_EQ("second", next.name);
  finish(next, blob);
  AWAIT_READY(second);
  AWAIT_DISCARDED(waiting);
  EXPECT_EQ(2u, feeds.count()) << "the discarded waiter was admitted";
  EXPECT_EQ(1u, stagingEntries());
}

TEST_F(ExtractorTest, AFailingRequestLeavesNoStaging) {
  Extractor extractor(runtime_, ExtractorOptions{.slots = 2});
  const std::string tar = testing::makeTar({TarEntry::file("etc/os", "one")}, testing::TarCompression::None);
  const std::string blob = testing::makeTar({TarEntry::file("etc/os", "one")});
  struct Case {
    std::string name;
    ExtractRequest request;
    std::string bytes;                 // what the feed writes
    std::optional<Error> feedFailure;  // how the feed ends, if it fails
    ErrorKind kind;
    std::string says;
  };
  ExtractRequest wrongDiffId = layerRequest(blob, tar);
  wrongDiffId.set_expected_diff_id(fetcher::sha256Digest("something else"));
  const std::string escaping = testing::makeTar({TarEntry::file("../outside", "x")});
  std::vector<Case> cases = {
      {"not gzip", layerRequest("garbage", tar), "garbage, not a gzip stream", std::nullopt, ErrorKind::Corruption, ""},
      {"wrong diffID", wrongDiffId, blob, std::nullopt, ErrorKind::DigestMismatch, "diff_ids"},
      {"escaping entry", layerRequest(escaping, tar), escaping, std::nullopt, ErrorKind::InvalidArgument, "outside"},
      {"feed failed", layerRequest(blob, tar), blob.substr(0, blob.size() / 2),
       Error(ErrorKind::Unavailable, "the registry went away"), ErrorKind::Unavailable, "the registry went away"},
  };
  for (const auto& c : cases) {
    HeldFeeds feeds;
    auto result = extractor.extract(c.request, feeds.feed(c.name));
    HeldFeeds::Admitted admitted;
    ASSERT_TRUE(feeds.waitFor(0, admitted)) << c.name;
    auto written = admitted.sink->write(c.bytes);
    written.waitFor(testing::kDefaultAwait);  // fails when the extraction stopped first
    ASSERT_TRUE(written.isReady() || written.isFailed()) << c.name;
    if (c.feedFailure) {
      admitted.done->fail(*c.feedFailure);
    } else if (written.isReady()) {
      admitted.done->set(Fed{});
    } else {
      admitted.done->fail(written.failure());  // as a puller would stop
    }
    AWAIT_FAILED(result);
    EXPECT_EQ(c.kind, result.failure().kind) << c.name << ": " << result.failure().message;
    if (!c.feedFailure) {  // the feed's own error comes as it is
      EXPECT_NE(std::string::npos, result.failure().message.find(c.request.what())) << result.failure().message;
    }
    EXPECT_NE(std::string::npos, result.failure().message.find(c.says)) << result.failure().message;
    EXPECT_FALSE(fs::exists(admitted.stagingDir)) << c.name << ": removed before the caller heard";
  }
  EXPECT_EQ(0u, stagingEntries());
  EXPECT_FALSE(fs::exists(sandbox() / "outside"));

  ExtractRequest unknown = layerRequest(blob, tar);
  unknown.mutable_layer()->set_media_type("application/x-unknown");
  HeldFeeds never;
  auto refused = extractor.extract(unknown, never.feed("unknown"));
  AWAIT_FAILED(refused);
  EXPECT_EQ(ErrorKind::Unsupported, refused.failure().kind) << refused.failure().message;
  ExtractRequest nowhere = layerRequest(blob, tar);
  nowhere.clear_staging_parent();
  auto homeless = extractor.extract(nowhere, never.feed("nowhere"));
  AWAIT_FAILED(homeless);
  EXPECT_EQ(ErrorKind::InvalidArgument, homeless.failure().kind) << homeless.failure().message;
  EXPECT_EQ(0u, never.count()) << "a refused request was admitted";
}

TEST_F(ExtractorTest, PrioritiesAreServedInOrderWhenSlotsAreScarce) {
  Extractor extractor(runtime_, ExtractorOptions{.slots = 1, .urgentSlots = 0});
  HeldFeeds feeds;
  const std::string tar = testing::makeTar({TarEntry::file("f", "x")}, testing::TarCompression::None);
  const std::string blob = testing::makeTar({TarEntry::file("f", "x")});
  std::vector<Future<ExtractResult>> results;
  results.push_back(extractor.extract(layerRequest(blob, tar, 0), feeds.feed("holder")));
  HeldFeeds::Admitted holder;
  ASSERT_TRUE(feeds.waitFor(0, holder));
  const std::vector<std::pair<std::string, int>> queued = {{"a", 1}, {"b", 5}, {"c", 3}, {"d", 5}, {"e", -2}};
  for (const auto& [name, priority] : queued) {
    results.push_back(extractor.extract(layerRequest(blob, tar, priority), feeds.feed(name)));
  }
  // All five wait behind the holder before it lets go.
  const std::size_t waiting = loadWhen(extractor, [&](const Extractor::Load& l) {
                                return l.waiting == queued.size();
                              }).waiting;
  ASSERT_EQ(queued.size(), waiting);
  finish(holder, blob);
  std::vector<std::string> order;
  for (std::size_t i = 1; i <= queued.size(); ++i) {
    HeldFeeds::Admitted next;
    ASSERT_TRUE(feeds.waitFor(i, next));
    order.push_back(next.name);
    finish(next, blob);
  }
  EXPECT_EQ(std::vector<std::string>({"b", "d", "c", "a", "e"}), order);
  for (auto& result : results) AWAIT_READY(result);
}

// An urgent request does not wait for a long one to end: it takes the
// extra slot; one as urgent as it then waits, and so does one of the
// running priority. A waiter raised above them takes a slot freed later.
TEST_F(ExtractorTest, AnUrgentRequestRunsBesideTheBoundAndARaiseReordersWaiters) {
  Extractor extractor(runtime_, ExtractorOptions{.slots = 1, .urgentSlots = 1});
  HeldFeeds feeds;
  const std::string tar = testing::makeTar({TarEntry::file("f", "x")}, testing::TarCompression::None);
  const std::string blob = testing::makeTar({TarEntry::file("f", "x")});
  std::vector<Future<ExtractResult>> results;
  results.push_back(extractor.extract(layerRequest(blob, tar, 0), feeds.feed("big")));
  HeldFeeds::Admitted big, urgent;
  ASSERT_TRUE(feeds.waitFor(0, big));
  results.push_back(extractor.extract(layerRequest(blob, tar, 0), feeds.feed("next-big")));
  auto raised = std::make_shared<std::atomic<int>>(0);
  results.push_back(extractor.extract(layerRequest(blob, tar, 0), feeds.feed("joined"), {}, nullptr, raised));
  results.push_back(extractor.extract(layerRequest(blob, tar, 10), feeds.feed("urgent")));
  ASSERT_TRUE(feeds.waitFor(1, urgent));
  EXPECT_EQ("urgent", urgent.name);
  results.push_back(extractor.extract(layerRequest(blob, tar, 10), feeds.feed("urgent-too")));
  const Extractor::Load load = loadWhen(extractor,
                                        [](const Extractor::Load& l) { return l.running == 2 && l.waiting == 3; });
  EXPECT_EQ(1u, load.slots);
  EXPECT_EQ(1u, load.urgent);
  EXPECT_EQ(2u, load.running);
  EXPECT_EQ(3u, load.waiting);
  // A more urgent request joined "joined"'s pull: the extra slot is taken,
  // so it goes first when one frees, before "urgent-too" and "next-big".
  raised->store(20);
  extractor.reconsider();
  AWAIT_READY(extractor.load());  // after the reconsider, on the extractor's strand
  EXPECT_EQ(2u, feeds.count());
  finish(urgent, blob);
  HeldFeeds::Admitted joined;
  ASSERT_TRUE(feeds.waitFor(2, joined));
  EXPECT_EQ("joined", joined.name);
  finish(joined, blob);
  finish(big, blob);
  std::vector<std::string> order;
  for (std::size_t i = 3; i < 5; ++i) {
    HeldFeeds::Admitted next;
    ASSERT_TRUE(feeds.waitFor(i, next));
    order.push_back(next.name);
    finish(next, blob);
  }
  EXPECT_EQ(std::vector<std::string>({"urgent-too", "next-big"}), order);
  for (auto& result : results) AWAIT_READY(result);
}

TEST_F(ExtractorTest, AnAciIsExtractedFromTheFileItsFeedLeaves) {
  Extractor extractor(runtime_);
  AciSpec spec;
  spec.name = "example.com/app";
  spec.rootfs = {TarEntry::file("etc/os", "appc")};
  const std::string aci = makeAci(spec);
  ExtractRequest request;
  request.set_format(ExtractRequest::ACI);
  request.set_what("the ACI of AppC image 'example.com/app'");
  request.set_staging_parent(staging_.string());
  auto feed = [](const std::string& bytes) -> Feed {
    return [bytes](const std::string& dir, const std::shared_ptr<fetcher::ByteSink>& sink) -> Future<Fed> {
      EXPECT_EQ(nullptr, sink);
      const std::string file = dir + "/image.aci";
      testing::writeFile(file, bytes);
      return Fed{file, true, "the ACI of AppC image 'example.com/app' ('" + file + "')"};
    };
  };
  auto result = extractor.extract(request, feed(aci));
  AWAIT_READY(result);
  EXPECT_EQ(aciId(makeAci(spec, testing::TarCompression::None)), result->content_id());
  EXPECT_EQ("example.com/app", result->appc_manifest().name());
  EXPECT_NE(std::string::npos, result->appc_manifest_json().find("example.com/app"));
  EXPECT_EQ("appc", testing::readFile(fs::path(result->rootfs()) / "etc/os"));
  EXPECT_FALSE(fs::exists(fs::path(result->staging_dir()) / "image.aci")) << "the archive was removed once read";
  EXPECT_NE(std::string::npos, result->what().find("image.aci")) << "the feed's name for it";
  fs::remove_all(result->staging_dir());

  auto broken = extractor.extract(request, feed("not an archive at all"));
  AWAIT_FAILED(broken);
  EXPECT_EQ(ErrorKind::Corruption, broken.failure().kind) << broken.failure().message;
  EXPECT_NE(std::string::npos, broken.failure().message.find("image.aci")) << broken.failure().message;
  EXPECT_EQ(0u, stagingEntries());
}

}  // namespace
}  // namespace prov::store
