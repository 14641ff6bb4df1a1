// The registry client against the fake registry: auth, retries, resume,
// redirects, verification, timeouts, back-pressure, mirrors.

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sys/stat.h>
#include <thread>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "fetcher/registry.hpp"
#include "testkit/files.hpp"
#include "tests/support/await.hpp"
#include "tests/support/fake_registry.hpp"

namespace prov::fetcher {
namespace {

using namespace std::chrono_literals;
using actors::Future;
using actors::Promise;
using testing::FakeRegistry;

// Collects a blob.
// Polls `condition` until it holds (a failure after 15 s). For states the
// test cannot be told of.
bool waitUntil(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "the condition did not come about within 15 s";
      return false;
    }
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// Polls `value` until it has stopped changing: the same over five polls
// 20 ms apart (a failure if it still changes after 15 s).
void waitUntilSteady(const std::function<std::size_t()>& value) {
  std::size_t last = value(), same = 0;
  waitUntil([&] {
    std::this_thread::sleep_for(20ms);
    const std::size_t now = value();
    same = now == last ? same + 1 : 0;
    last = now;
    return same >= 5;
  });
}

class StringSink : public ByteSink {
 public:
  Future<Nothing> write(std::string_view chunk) override {
    std::lock_guard lock(mutex_);
    data_.append(chunk);
    ++writes_;
    largest_ = std::max(largest_, chunk.size());
    return Nothing{};
  }
  std::string data() const {
    std::lock_guard lock(mutex_);
    return data_;
  }
  std::size_t largest() const {
    std::lock_guard lock(mutex_);
    return largest_;
  }

 private:
  mutable std::mutex mutex_;
  std::string data_;
  int writes_ = 0;
  std::size_t largest_ = 0;
};

// Holds every write until release(): a consumer that does not keep up.
class HeldSink : public ByteSink {
 public:
  // `firstBytes` runs when the first chunk arrives.
  explicit HeldSink(std::function<void()> firstBytes = {}) : firstBytes_(std::move(firstBytes)) {}

  Future<Nothing> write(std::string_view chunk) override {
    std::lock_guard lock(mutex_);
    if (received_ == 0 && firstBytes_) firstBytes_();
    received_ += chunk.size();
    largest_ = std::max(largest_, chunk.size());
    if (released_) return Nothing{};
    held_.emplace_back();
    return held_.back().future();
  }
  void release() {
    std::vector<Promise<Nothing>> held;
    {
      std::lock_guard lock(mutex_);
      released_ = true;
      held.swap(held_);
    }
    for (auto& p : held) p.set(Nothing{});
  }
  std::size_t received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }
  std::size_t largest() const {
    std::lock_guard lock(mutex_);
    return largest_;
  }
  bool released() const {
    std::lock_guard lock(mutex_);
    return released_;
  }

 private:
  const std::function<void()> firstBytes_;
  mutable std::mutex mutex_;
  std::vector<Promise<Nothing>> held_;
  std::size_t received_ = 0;
  std::size_t largest_ = 0;
  bool released_ = false;
};

FakeRegistry::Fault fault(std::string match, int status, int times = 1,
                          std::map<std::string, std::string> headers = {}) {
  FakeRegistry::Fault f;
  f.match = std::move(match);
  f.status = status;
  f.times = times;
  f.headers = std::move(headers);
  return f;
}

messages::Descriptor blobOf(const std::string& digest, std::int64_t size) {
  messages::Descriptor d;
  d.set_digest(digest);
  d.set_size(size);
  return d;
}

std::string descriptorJson(const std::string& mediaType, const std::string& digest, std::size_t size,
                           const std::string& extra = "") {
  return R"({"mediaType":")" + mediaType + R"(","digest":")" + digest + R"(","size":)" + std::to_string(size) + extra +
         "}";
}

struct Published {
  std::string manifestDigest;
  std::string configDigest;
  std::vector<std::string> layerDigests;
};

// A schema 2 image whose "layers" are the given strings.
Published publish(FakeRegistry& registry, const std::string& repo, const std::string& tag,
                  const std::vector<std::string>& layers, const std::string& architecture = "amd64") {
  Published p;
  std::string diffIds, layerList;
  for (const auto& layer : layers) {
    const std::string digest = registry.addBlob(layer);
    p.layerDigests.push_back(digest);
    diffIds += (diffIds.empty() ? "\"" : ",\"") + sha256Digest("tar:" + layer) + "\"";
    layerList += (layerList.empty() ? "" : ",") + descriptorJson(mediatype::kDockerLayerGzip, digest, layer.size());
  }
  const std::string config = R"({"architecture":")" + architecture +
                             R"(","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]},)"
                             R"("rootfs":{"type":"layers","diff_ids":[)" +
                             diffIds + "]}}";
  p.configDigest = registry.addBlob(config);
  const std::string manifest = R"({"schemaVersion":2,"mediaType":")" + std::string(mediatype::kDockerSchema2) +
                               R"(","config":)" +
                               descriptorJson(mediatype::kDockerConfig, p.configDigest, config.size()) +
                               R"(,"layers":[)" + layerList + "]}";
  p.manifestDigest = registry.putManifest(repo, tag, manifest, mediatype::kDockerSchema2);
  return p;
}

messages::Platform platform(const std::string& architecture) {
  messages::Platform p;
  p.set_os("linux");
  p.set_architecture(architecture);
  return p;
}

class RegistryTest : public ::testing::Test {
 protected:
  static RetryPolicy fastRetry(int attempts = 4) {
    return RetryPolicy{.maxAttempts = attempts, .initialDelay = 1ms, .maxDelay = 5ms, .multiplier = 2.0, .jitter = 0.1};
  }
  RegistryOptions options(RetryPolicy retry = fastRetry()) {
    RegistryOptions o;
    o.retry = retry;
    o.http.connectTimeout = 5s;
    o.http.stallWindow = 5s;
    return o;
  }
  std::shared_ptr<RegistryClient> client(RegistryOptions o) {
    auto c = RegistryClient::create(runtime_, std::move(o));
    EXPECT_TRUE(c.isSome()) << (c.isError() ? c.error().message : "");
    return *c;
  }
  std::shared_ptr<RegistryClient> client() { return client(options()); }
  Repository repo(const FakeRegistry& registry, const std::string& name = "test/app",
                  std::optional<messages::Credentials> credentials = {}) {
    return Repository{*parseUrl(registry.url() + "/"), registry.hostPort(), name, std::move(credentials)};
  }
  static messages::Credentials user(const std::string& name, const std::string& password) {
    messages::Credentials c;
    c.set_username(name);
    c.set_password(password);
    return c;
  }
  messages::ImageReference reference(const FakeRegistry& registry, const std::string& rest) {
    return *parseNormalized(registry.hostPort() + "/" + rest);
  }

  actors::Runtime runtime_;
};

TEST_F(RegistryTest, PingAcceptsOkAndChallengeAndReportsOthers) {
  FakeRegistry registry;
  auto c = client();
  AWAIT_EXPECT_READY(c->ping(*parseUrl(registry.url())));
  registry.requireBearer();
  AWAIT_EXPECT_READY(c->ping(*parseUrl(registry.url())));
  registry.fail(fault("/v2/", 404));
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, c->ping(*parseUrl(registry.url())));
}

// A registry named by an address (IPv4 or IPv6) is reached without the
// resolver; one named by a host name, through it (localhost may resolve
// to ::1 first, where nothing listens: the next address is tried).
TEST_F(RegistryTest, AddressesAndHostNamesBothReachTheRegistry) {
  FakeRegistry v4;
  FakeRegistry v6("::1");
  auto c = client();
  AWAIT_EXPECT_READY(c->ping(*parseUrl("http://127.0.0.1:" + std::to_string(v4.port()) + "/")));
  AWAIT_EXPECT_READY(c->ping(*parseUrl("http://[::1]:" + std::to_string(v6.port()) + "/")));
  AWAIT_EXPECT_READY(c->ping(*parseUrl("http://localhost:" + std::to_string(v4.port()) + "/")));
  EXPECT_EQ(2u, v4.requests().size());
  EXPECT_EQ(1u, v6.requests().size());
}

// A runtime that starts with one worker (the command line's pull) gets the
// others once the blobs streamed add up to 8 MiB: not for a small layer.
TEST_F(RegistryTest, HeldBackWorkersStartOnceBlobsAddUpToBulk) {
  FakeRegistry registry;
  const std::string small(1 << 20, 's');
  const std::string big(7 << 20, 'b');
  Published image = publish(registry, "test/app", "v1", {small, big});
  actors::Runtime runtime(actors::Runtime::Options{.workerThreads = 2, .startedWorkerThreads = 1});
  {
    auto created = RegistryClient::create(runtime, options());
    ASSERT_TRUE(created.isSome());
    auto c = *created;
    AWAIT_READY(c->fetchManifest(repo(registry), "v1"));
    AWAIT_READY(c->readBlob(repo(registry), blobOf(image.configDigest, -1), 1 << 20));
    auto sink = std::make_shared<StringSink>();
    AWAIT_READY(c->streamBlob(repo(registry), blobOf(image.layerDigests[0], small.size()), sink));
    EXPECT_EQ(small.size(), sink->data().size());
    EXPECT_EQ(1u, runtime.startedWorkers());
    sink = std::make_shared<StringSink>();
    AWAIT_READY(c->streamBlob(repo(registry), blobOf(image.layerDigests[1], big.size()), sink));
    EXPECT_EQ(big, sink->data());
    EXPECT_EQ(2u, runtime.startedWorkers());
  }
  runtime.shutdown();
}

TEST_F(RegistryTest, ManifestByTagSendsTheAcceptListAndChecksTheClaimedDigest) {
  FakeRegistry registry;
  Published image = publish(registry, "test/app", "v1", {"layer one"});
  auto c = client();
  Future<FetchedManifest> fetched = c->fetchManifest(repo(registry), "v1");
  AWAIT_READY(fetched);
  EXPECT_EQ(image.manifestDigest, fetched->digest);
  ASSERT_TRUE(std::holds_alternative<messages::Manifest>(fetched->document));
  EXPECT_EQ(1, std::get<messages::Manifest>(fetched->document).layers_size());
  const auto seen = registry.requests();
  ASSERT_FALSE(seen.empty());
  for (const char* type : {mediatype::kOciIndex, mediatype::kOciManifest, mediatype::kDockerList,
                           mediatype::kDockerSchema2, mediatype::kDockerSchema1Signed}) {
    EXPECT_NE(std::string::npos, seen.back().accept.find(type)) << type;
  }

  registry.claimDigest("test/app", "v1", sha256Digest("something else"));
  Future<FetchedManifest> lied = c->fetchManifest(repo(registry), "v1");
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, lied);
  EXPECT_NE(std::string::npos, lied.failure().message.find("Docker-Content-Digest"));
}

TEST_F(RegistryTest, ManifestByDigestMustHashToIt) {
  FakeRegistry registry;
  Published image = publish(registry, "test/app", "v1", {"layer"});
  auto c = client();
  AWAIT_EXPECT_READY(c->fetchManifest(repo(registry), image.manifestDigest));
  // A registry that answers a digest with another document.
  const std::string wanted = sha256Digest("the manifest I asked for");
  registry.putManifest("test/app", wanted,
                       R"({"schemaVersion":2,"mediaType":")" + std::string(mediatype::kDockerSchema2) +
                           R"(","layers":[]})",
                       mediatype::kDockerSchema2);
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, c->fetchManifest(repo(registry), wanted));
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, c->fetchManifest(repo(registry), "sha256:../../etc/passwd"));
}

TEST_F(RegistryTest, OversizeManifestAndShapeMismatchAreRefused) {
  FakeRegistry registry;
  registry.putManifest("test/app", "big", std::string(kMaxManifestBytes + 10, ' '), mediatype::kDockerSchema2);
  // An index served as a manifest (CVE-2021-41190).
  registry.putManifest("test/app", "posing",
                       R"({"schemaVersion":2,"manifests":[)" +
                           descriptorJson(mediatype::kDockerSchema2, sha256Digest("x"), 1) + "]}",
                       mediatype::kDockerSchema2);
  auto c = client();
  AWAIT_EXPECT_ERROR(ErrorKind::ResourceExhausted, c->fetchManifest(repo(registry), "big"));
  AWAIT_EXPECT_ERROR(ErrorKind::Corruption, c->fetchManifest(repo(registry), "posing"));
}

TEST_F(RegistryTest, StatusesAreReportedDistinctly) {
  FakeRegistry registry;
  auto c = client();
  Future<FetchedManifest> missing = c->fetchManifest(repo(registry), "nope");
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, missing);
  EXPECT_NE(std::string::npos, missing.failure().message.find("MANIFEST_UNKNOWN"));
  registry.fail(fault("/manifests/", 403));
  AWAIT_EXPECT_ERROR(ErrorKind::Forbidden, c->fetchManifest(repo(registry), "v1"));
  registry.requireBasic("alice", "s3cret");
  AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, c->fetchManifest(repo(registry), "v1"));
}

TEST_F(RegistryTest, AnonymousBearerTokenIsFetchedOnceAndCached) {
  FakeRegistry registry;
  registry.requireBearer();
  Published image = publish(registry, "test/app", "v1", {"a", "b"});
  auto c = client();
  AWAIT_READY(c->fetchManifest(repo(registry), "v1"));
  AWAIT_READY(c->readBlob(repo(registry), blobOf(image.configDigest, -1), 1 << 20));
  auto sink = std::make_shared<StringSink>();
  AWAIT_READY(c->streamBlob(repo(registry), blobOf(image.layerDigests[1], 1), sink));
  EXPECT_EQ("b", sink->data());
  EXPECT_EQ(1u, registry.count("/token"));
  const auto seen = registry.requests();
  const auto& tokenRequest = *std::find_if(seen.begin(), seen.end(),
                                           [](auto& s) { return s.target.rfind("/token", 0) == 0; });
  EXPECT_NE(std::string::npos, tokenRequest.target.find("scope=repository:test/app:pull"));
  EXPECT_NE(std::string::npos, tokenRequest.target.find("service=fake"));
  EXPECT_TRUE(tokenRequest.authorization.empty());  // anonymous
  EXPECT_EQ("Bearer tok-1", seen.back().authorization);
}

TEST_F(RegistryTest, BearerTokenWithBasicCredentialsAndRefusal) {
  FakeRegistry registry;
  registry.requireBearer(std::make_pair(std::string("alice"), std::string("s3cret")));
  publish(registry, "test/app", "v1", {"a"});
  auto c = client();
  AWAIT_EXPECT_READY(c->fetchManifest(repo(registry, "test/app", user("alice", "s3cret")), "v1"));
  Future<FetchedManifest> refused = c->fetchManifest(repo(registry, "test/other", user("alice", "wrong-pass")), "v1");
  AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, refused);
  EXPECT_EQ(std::string::npos, refused.failure().message.find("wrong-pass"));
}

TEST_F(RegistryTest, TokenThatExpiresMidPullIsRenewed) {
  FakeRegistry registry;
  registry.requireBearer({}, /*tokenUses=*/2);
  Published image = publish(registry, "test/app", "v1", {"one", "two", "three"});
  auto c = client();
  AWAIT_READY(c->fetchManifest(repo(registry), "v1"));
  for (std::size_t i = 0; i < image.layerDigests.size(); ++i) {
    auto sink = std::make_shared<StringSink>();
    AWAIT_READY(c->streamBlob(repo(registry), blobOf(image.layerDigests[i], -1), sink));
  }
  EXPECT_GE(registry.count("/token"), 2u);
}

TEST_F(RegistryTest, TokenIsRenewedWhenExpiresInHasPassedOnTheClock) {
  FakeRegistry registry;
  registry.requireBearer({}, 0, /*expiresIn=*/-1);  // no expires_in: 60 s
  publish(registry, "test/app", "v1", {"one"});
  runtime_.clock().pause();
  auto c = client();
  AWAIT_READY(c->fetchManifest(repo(registry), "v1"));
  runtime_.clock().advance(59s);
  AWAIT_READY(c->fetchManifest(repo(registry), "v1"));
  EXPECT_EQ(1u, registry.count("/token"));
  runtime_.clock().advance(2s);
  const std::size_t before = registry.requests().size();
  AWAIT_READY(c->fetchManifest(repo(registry), "v1"));
  EXPECT_EQ(2u, registry.count("/token"));
  // Expired before use: token first, then one manifest request, no 401 round trip.
  EXPECT_EQ(before + 2, registry.requests().size());
}

// Registries that bend the protocol, one knob each.

// ECR answers HEAD with 405 (MESOS-7427): the client never needs HEAD.
TEST_F(RegistryTest, ARegistryThatRefusesHeadIsPulledWithGets) {
  FakeRegistry registry;
  registry.answerHead(405);
  Published image = publish(registry, "test/app", "v1", {"a", "b"});
  AWAIT_READY(client()->resolve(reference(registry, "test/app:v1"), platform("amd64")));
  auto sink = std::make_shared<StringSink>();
  AWAIT_READY(client()->streamBlob(repo(registry), blobOf(image.layerDigests[1], 1), sink));
  EXPECT_EQ("b", sink->data());
  for (const auto& seen : registry.requests()) EXPECT_NE("HEAD", seen.method) << seen.target;
}

// A challenge with only a realm (MESOS-10092): the scope is the
// repository's pull scope, and no service is invented.
TEST_F(RegistryTest, AChallengeWithoutScopeOrServiceGetsTheRepositorysScope) {
  FakeRegistry registry;
  registry.requireBearer();
  registry.challengeWith("realm=\"" + registry.url() + "/token\"");
  publish(registry, "test/app", "v1", {"a"});
  AWAIT_READY(client()->fetchManifest(repo(registry), "v1"));
  const auto seen = registry.requests();
  const auto token = std::find_if(seen.begin(), seen.end(), [](auto& r) { return r.target.rfind("/token", 0) == 0; });
  ASSERT_NE(seen.end(), token);
  EXPECT_EQ("/token?scope=repository:test/app:pull", token->target);
}

// A token answer with access_token (OAuth2 style) instead of token.
TEST_F(RegistryTest, ATokenAnswerWithAccessTokenIsUsed) {
  FakeRegistry registry;
  registry.requireBearer();
  registry.tokenFieldName("access_token");
  publish(registry, "test/app", "v1", {"a"});
  AWAIT_READY(client()->fetchManifest(repo(registry), "v1"));
  EXPECT_EQ("Bearer tok-1", registry.requests().back().authorization);
}

// GCR answers an anonymous request with 403 and a challenge (MESOS-7431):
// answered like a 401; a 403 with a token is still Forbidden.
TEST_F(RegistryTest, AnAnonymous403WithAChallengeIsAnsweredWithAToken) {
  FakeRegistry registry;
  registry.requireBearer();
  registry.forbidAnonymous();
  publish(registry, "test/app", "v1", {"a"});
  AWAIT_READY(client()->fetchManifest(repo(registry), "v1"));
  EXPECT_EQ(1u, registry.count("/token"));
  registry.fail({.match = "/manifests/", .status = 403, .headers = {}, .body = "", .times = 1});
  AWAIT_EXPECT_ERROR(ErrorKind::Forbidden, client()->fetchManifest(repo(registry), "v1"));
}

// S3-backed registries serve manifests as text/plain or
// application/octet-stream: judged by their own mediaType and shape.
TEST_F(RegistryTest, AManifestServedAsPlainTextIsJudgedByItsOwnShape) {
  for (const std::string type : {"text/plain", "application/octet-stream"}) {
    FakeRegistry registry;
    Published image = publish(registry, "test/app", "v1", {"a"});
    auto fetched = client()->fetchManifest(repo(registry), "v1");
    AWAIT_READY(fetched);
    const std::string served = fetched->body;
    registry.putManifest("test/app", "v2", served, type);
    Future<messages::ResolvedImage> resolved = client()->resolve(reference(registry, "test/app:v2"), platform("amd64"));
    AWAIT_READY(resolved);
    EXPECT_EQ(mediatype::kDockerSchema2, resolved->manifest().media_type()) << type;
    EXPECT_EQ(image.layerDigests, std::vector<std::string>({resolved->manifest().layers(0).digest()}));
  }
}

// A token that runs out in the middle of a big layer (MESOS-9221): the
// transfer breaks, the resumed request meets a 401, a new token is fetched
// and the layer resumes with Range where it stopped, not from byte 0.
TEST_F(RegistryTest, ATokenThatExpiresInTheMiddleOfALayerResumesWithRange) {
  FakeRegistry registry;
  registry.requireBearer({}, /*tokenUses=*/2);
  std::string big(2 << 20, 'x');
  for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  Published image = publish(registry, "test/app", "v1", {big});
  auto c = client();
  AWAIT_READY(c->fetchManifest(repo(registry), "v1"));  // the token's first use
  registry.dropBlobsAfter(1 << 20);                     // its second: the layer breaks after 1 MiB
  auto sink = std::make_shared<StringSink>();
  AWAIT_READY(c->streamBlob(repo(registry), blobOf(image.layerDigests[0], big.size()), sink));
  EXPECT_TRUE(sink->data() == big);
  EXPECT_EQ(2u, registry.count("/token"));
  const auto seen = registry.requests();
  const auto& last = seen.back();
  EXPECT_EQ("bytes=" + std::to_string(1 << 20) + "-", last.range);
  EXPECT_EQ("Bearer tok-2", last.authorization);
  std::size_t fromZero = 0;
  for (const auto& r : seen) fromZero += r.target.find("/blobs/") != std::string::npos && r.range.empty();
  EXPECT_EQ(1u, fromZero);  // only the first attempt
}

// An identity token (the Docker config's identitytoken, an OAuth2 refresh
// token) is exchanged at the realm with a form POST, as Docker does.
TEST_F(RegistryTest, AnIdentityTokenIsExchangedWithAnOAuth2Post) {
  FakeRegistry registry;
  registry.requireBearer();
  registry.acceptRefreshToken("refresh-me");
  publish(registry, "test/app", "v1", {"a"});
  messages::Credentials identity;
  identity.set_identity_token("refresh-me");
  AWAIT_READY(client()->fetchManifest(repo(registry, "test/app", identity), "v1"));
  const auto seen = registry.requests();
  const auto post = std::find_if(seen.begin(), seen.end(), [](auto& r) { return r.method == "POST"; });
  ASSERT_NE(seen.end(), post);
  EXPECT_EQ("/token", post->target);
  EXPECT_EQ("application/x-www-form-urlencoded", post->contentType);
  EXPECT_EQ(
      "grant_type=refresh_token&refresh_token=refresh-me&client_id=provisioner&service=fake&"
      "scope=repository:test/app:pull",
      post->body);
  EXPECT_TRUE(post->authorization.empty());
  EXPECT_EQ("Bearer tok-1", seen.back().authorization);

  identity.set_identity_token("not-the-token");
  Future<FetchedManifest> refused = client()->fetchManifest(repo(registry, "test/app", identity), "v1");
  AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, refused);
  EXPECT_EQ(std::string::npos, refused.failure().message.find("not-the-token"));
}

// The scheme rule: a registry on 127.0.0.1 named without a scheme is tried
// over plain http first, with no TLS attempt (and no TLS set-up); one that
// answers is used over http from then on, and told to onPlainFound (for the
// store's state) once. A client that starts knowing it does the same.
TEST_F(RegistryTest, APlainLoopbackRegistryIsFoundOnceAndRemembered) {
  FakeRegistry registry;
  registry.requireBearer();
  publish(registry, "test/app", "v1", {"a", "b"});
  std::mutex mutex;
  std::vector<std::string> found;
  RegistryOptions o = options();
  o.http.onPlainFound = [&](const std::string& origin, bool plain) {
    std::lock_guard lock(mutex);
    found.push_back(origin + (plain ? " plain" : " tls"));
  };
  auto c = client(o);
  // A new connection there goes without TLS: plain is tried first.
  const Url https = *parseUrl("https://" + registry.hostPort() + "/v2/");
  EXPECT_TRUE(c->http().reachesPlain(https));
  EXPECT_TRUE(c->http().reachesPlain(*parseUrl("http://" + registry.hostPort() + "/v2/")));
  AWAIT_READY(c->resolve(reference(registry, "test/app:v1"), platform("amd64")));
  EXPECT_TRUE(c->http().reachesPlain(https));
  AWAIT_READY(c->resolve(reference(registry, "test/app:v1"), platform("amd64")));
  EXPECT_EQ(0u, registry.notHttpConnections());
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(std::vector<std::string>{registry.hostPort() + " plain"}, found);
  }
  // Authorization went to the plain origin it was issued for.
  EXPECT_EQ("Bearer tok-1", registry.requests().back().authorization);

  RegistryOptions known = options();
  known.http.plainOrigins = {registry.hostPort()};
  auto remembered = client(known);
  EXPECT_TRUE(remembered->http().reachesPlain(https));
  AWAIT_READY(remembered->resolve(reference(registry, "test/app:v1"), platform("amd64")));
  EXPECT_EQ(0u, registry.notHttpConnections());
}

// A registry listed as insecure may be across a network: TLS is tried
// first there (the ClientHello the fake answers as HTTP), then plain.
TEST_F(RegistryTest, AListedInsecureRegistryIsTriedOverTlsFirst) {
  FakeRegistry registry;
  publish(registry, "test/app", "v1", {"a"});
  RegistryOptions o = options();
  o.insecure = {registry.hostPort()};
  auto c = client(o);
  const Url https = *parseUrl("https://" + registry.hostPort() + "/v2/");
  EXPECT_FALSE(c->http().reachesPlain(https));
  AWAIT_READY(c->resolve(reference(registry, "test/app:v1"), platform("amd64")));
  EXPECT_EQ(1u, registry.notHttpConnections());
  EXPECT_TRUE(c->http().reachesPlain(https));
}

// Credential helpers, scripted: each is a docker-credential-<name> in a
// directory put first in PATH for the test.
class CredentialHelperTest : public RegistryTest {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/prov-helpers-XXXXXX";
    ASSERT_NE(nullptr, ::mkdtemp(dir));
    dir_ = dir;
    const char* path = std::getenv("PATH");
    oldPath_ = path ? path : "";
    ::setenv("PATH", (dir_ + ":" + oldPath_).c_str(), 1);
  }
  void TearDown() override {
    ::setenv("PATH", oldPath_.c_str(), 1);
    std::filesystem::remove_all(dir_);
  }
  // docker-credential-<name>: logs each server it is asked for, then `body`.
  std::string helper(const std::string& name, const std::string& body) {
    const std::string path = dir_ + "/docker-credential-" + name;
    testing::writeFile(path, "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r server\necho \"$server\" >>" + dir_ + "/" +
                                 name + ".log\n" + body + "\n");
    ::chmod(path.c_str(), 0755);
    return name;
  }
  std::string asked(const std::string& name) const {
    std::ifstream in(dir_ + "/" + name + ".log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string dir_, oldPath_;
};

TEST_F(CredentialHelperTest, AHelpersAnswerIsAskedOnceAndUsed) {
  FakeRegistry registry;
  registry.requireBearer(std::make_pair(std::string("alice"), std::string("s3cret")));
  Published image = publish(registry, "test/app", "v1", {"a", "b"});
  RegistryOptions o = options();
  o.helpers.byRegistry[registry.hostPort()] = helper(
      "fake", R"(printf '{"ServerURL":"%s","Username":"alice","Secret":"s3cret"}' "$server")");
  auto c = client(o);
  AWAIT_READY(c->resolve(reference(registry, "test/app:v1"), platform("amd64")));
  auto repositories = c->repositories(reference(registry, "test/app:v1"));
  ASSERT_TRUE(repositories.isSome());
  for (const auto& digest : image.layerDigests) {
    AWAIT_READY(c->streamBlob(repositories->back(), blobOf(digest, 1), std::make_shared<StringSink>()));
  }
  EXPECT_EQ(registry.hostPort() + "\n", asked("fake"));  // once, for every request of the process
  EXPECT_EQ(1u, registry.count("/token"));
}

TEST_F(CredentialHelperTest, CredsStoreWithNothingFallsBackToAuthsAndATokenIsAnIdentityToken) {
  FakeRegistry registry;
  registry.requireBearer(std::make_pair(std::string("alice"), std::string("s3cret")));
  publish(registry, "test/app", "v1", {"a"});
  RegistryOptions o = options();
  o.helpers.store = helper("empty", R"(echo "credentials not found in native keychain"; exit 1)");
  o.auths = *parseDockerConfig(R"({"auths":{")" + registry.hostPort() + R"(":{"auth":"YWxpY2U6czNjcmV0"}}})");
  AWAIT_READY(client(o)->resolve(reference(registry, "test/app:v1"), platform("amd64")));
  EXPECT_EQ(registry.hostPort() + "\n", asked("empty"));

  FakeRegistry oauth;
  oauth.requireBearer();
  oauth.acceptRefreshToken("from-the-helper");
  publish(oauth, "test/app", "v1", {"a"});
  RegistryOptions t = options();
  t.helpers.store = helper("token", R"(printf '{"ServerURL":"r","Username":"<token>","Secret":"from-the-helper"}')");
  AWAIT_READY(client(t)->resolve(reference(oauth, "test/app:v1"), platform("amd64")));
  EXPECT_EQ(1u, oauth.count("/token"));
}

TEST_F(CredentialHelperTest, AMissingFailingOrSlowHelperIsAClearError) {
  FakeRegistry registry;
  registry.requireBearer(std::make_pair(std::string("alice"), std::string("s3cret")));
  publish(registry, "test/app", "v1", {"a"});
  struct Case {
    std::string name, body;
    ErrorKind kind;
    std::string says;
  } cases[] = {
      {"nothere", "", ErrorKind::NotFound, "'docker-credential-nothere' is not installed (not found in PATH)"},
      {"broken", "echo 'keychain locked'; exit 1", ErrorKind::Unavailable,
       "'docker-credential-broken' failed (exit status 1): keychain locked"},
      {"slow", "sleep 20", ErrorKind::Timeout, "'docker-credential-slow': it did not answer within 0.30 s"},
  };
  for (const auto& c : cases) {
    RegistryOptions o = options(fastRetry(1));
    o.helperTimeout = std::chrono::milliseconds(300);
    o.helpers.store = c.body.empty() ? c.name : helper(c.name, c.body);
    const auto started = std::chrono::steady_clock::now();
    Future<messages::ResolvedImage> failed = client(o)->resolve(reference(registry, "test/app:v1"), platform("amd64"));
    AWAIT_EXPECT_ERROR(c.kind, failed);
    EXPECT_NE(std::string::npos, failed.failure().message.find("Failed to get the credentials for '" +
                                                               registry.hostPort() + "' from 'docker-credential-"))
        << failed.failure().message;
    EXPECT_NE(std::string::npos, failed.failure().message.find(c.says)) << failed.failure().message;
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10)) << c.name;
  }
}

// A registry on an IPv6 literal: the reference parses and prints, the
// scheme rule applies (::1 is loopback: TLS tried, plain found), tokens
// come from its realm and blobs stream.
TEST_F(RegistryTest, ARegistryOnAnIpV6Literal) {
  FakeRegistry registry("::1");
  EXPECT_EQ("[::1]:" + std::to_string(registry.port()), registry.hostPort());
  registry.requireBearer();
  Published image = publish(registry, "test/app", "v1", {"a", "b"});
  const auto ref = reference(registry, "test/app:v1");
  EXPECT_EQ(registry.hostPort() + "/test/app:v1", toString(ref));
  auto c = client();
  Future<messages::ResolvedImage> resolved = c->resolve(ref, platform("amd64"));
  AWAIT_READY(resolved);
  EXPECT_EQ("https://" + registry.hostPort() + "/", resolved->endpoint());
  auto repositories = c->repositories(ref);
  ASSERT_TRUE(repositories.isSome());
  auto sink = std::make_shared<StringSink>();
  AWAIT_READY(c->streamBlob(repositories->back(), blobOf(image.layerDigests[1], 1), sink));
  EXPECT_EQ("b", sink->data());
  EXPECT_EQ(0u, registry.notHttpConnections());  // loopback: plain http first
  EXPECT_EQ(1u, registry.count("/token"));
}

// A hostile signed schema 1 body: its own layers first, then a signature
// whose protected header rebuilds the real manifest's payload (one byte of
// the body, then the rest as formatTail). The digest pinned in the
// reference matches that payload; what is used must be the payload too,
// never the body's layers.
TEST_F(RegistryTest, ASignedSchema1BodyIsUsedOnlyAsItsPayload) {
  FakeRegistry registry;
  const std::string v1 = R"({\"id\":\")" + std::string(64, 'a') + R"(\"})";
  auto manifest = [&](const std::string& layer) {
    return R"({"schemaVersion":1,"name":"test/app","tag":"v1","architecture":"amd64","fsLayers":[{"blobSum":")" +
           layer + R"("}],"history":[{"v1Compatibility":")" + v1 + R"("}])";
  };
  const std::string real = registry.addBlob("real layer"), evil = registry.addBlob("evil layer");
  const std::string payload = manifest(real) + "}";
  const std::string header = R"({"formatLength":1,"formatTail":")" + testing::base64Url(payload.substr(1)) + R"("})";
  const std::string body = manifest(evil) + R"(,"signatures":[{"header":{"alg":"ES256"},"signature":"c2ln",)" +
                           R"("protected":")" + testing::base64Url(header) + R"("}]})";
  const std::string digest = sha256Digest(payload);
  registry.putManifest("test/app", digest, body, mediatype::kDockerSchema1Signed);
  registry.claimDigest("test/app", digest, digest);
  Future<FetchedManifest> fetched = client()->fetchManifest(repo(registry), digest);
  AWAIT_READY(fetched);
  const auto& m = std::get<messages::Manifest>(fetched->document);
  ASSERT_EQ(1, m.layers_size());
  EXPECT_EQ(real, m.layers(0).digest());
  EXPECT_EQ(payload, fetched->body);
}

TEST_F(RegistryTest, BasicAuthWhereTheRegistryAsksForIt) {
  FakeRegistry registry;
  registry.requireBasic("alice", "s3cret");
  publish(registry, "test/app", "v1", {"one"});
  auto c = client();
  AWAIT_EXPECT_READY(c->fetchManifest(repo(registry, "test/app", user("alice", "s3cret")), "v1"));
  EXPECT_EQ("Basic YWxpY2U6czNjcmV0", registry.requests().back().authorization);
  // bob's image never borrows alice's answer, and his password is in no message.
  Future<FetchedManifest> wrong = c->fetchManifest(repo(registry, "test/app", user("bob", "hunter2")), "v1");
  AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, wrong);
  EXPECT_EQ(std::string::npos, wrong.failure().message.find("hunter2"));
  EXPECT_EQ("Basic Ym9iOmh1bnRlcjI=", registry.requests().back().authorization);
  // No credentials at all: a clear error.
  Future<FetchedManifest> none = c->fetchManifest(repo(registry), "v1");
  AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, none);
  EXPECT_NE(std::string::npos, none.failure().message.find("none are configured"));
}

TEST_F(RegistryTest, ServerErrorsAreRetriedThenGiveUp) {
  FakeRegistry registry;
  publish(registry, "test/app", "v1", {"one"});
  auto c = client();
  registry.fail(fault("/manifests/", 503, 2));
  registry.fail(fault("/manifests/", 500));
  AWAIT_EXPECT_READY(c->fetchManifest(repo(registry), "v1"));
  EXPECT_EQ(4u, registry.count("/manifests/"));

  registry.fail(fault("/manifests/", 503, 100));
  Future<FetchedManifest> gaveUp = c->fetchManifest(repo(registry), "v1");
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, gaveUp);
  EXPECT_NE(std::string::npos, gaveUp.failure().message.find("Gave up after 4 attempts"));
}

TEST_F(RegistryTest, TooManyRequestsWaitsForRetryAfterOnTheClock) {
  FakeRegistry registry;
  publish(registry, "test/app", "v1", {"one"});
  RetryPolicy retry = fastRetry();
  retry.maxRetryAfter = 60s;
  auto c = client(options(retry));
  runtime_.clock().pause();
  registry.fail(fault("/manifests/", 429, 1, {{"Retry-After", "30"}}));
  Future<FetchedManifest> fetched = c->fetchManifest(repo(registry), "v1");
  // The 429 came back and the retry waits on the clock (its only timer).
  waitUntil([&] { return runtime_.clock().pending() == 1; });
  runtime_.clock().advance(29s);
  runtime_.clock().settle();  // had a timer been due, its work would have run
  EXPECT_EQ(1u, runtime_.clock().pending());
  EXPECT_EQ(1u, registry.count("/manifests/"));
  EXPECT_TRUE(fetched.isPending());
  runtime_.clock().advance(2s);
  AWAIT_EXPECT_READY(fetched);
  EXPECT_EQ(2u, registry.count("/manifests/"));
}

TEST_F(RegistryTest, RedirectToAnotherOriginNeverCarriesAuthorization) {
  FakeRegistry registry, storage;
  registry.requireBearer(std::make_pair(std::string("alice"), std::string("s3cret")));
  Published image = publish(registry, "test/app", "v1", {"layer bytes"});
  storage.addBlob("layer bytes");
  registry.redirectBlobsTo(storage.url());
  auto c = client();
  auto sink = std::make_shared<StringSink>();
  AWAIT_READY(
      c->streamBlob(repo(registry, "test/app", user("alice", "s3cret")), blobOf(image.layerDigests[0], 11), sink));
  EXPECT_EQ("layer bytes", sink->data());
  EXPECT_EQ(1u, storage.count("/blobs/"));
  EXPECT_FALSE(storage.sawAuthorization());
  EXPECT_TRUE(registry.sawAuthorization());
}

TEST_F(RegistryTest, RedirectLoopsAreBounded) {
  FakeRegistry registry;
  const std::string digest = registry.addBlob("looping");
  registry.redirectBlobsTo(registry.url());  // to itself, forever
  auto c = client(options(fastRetry(1)));
  Future<Nothing> looped = c->streamBlob(repo(registry), blobOf(digest, 7), std::make_shared<StringSink>());
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, looped);
  EXPECT_NE(std::string::npos, looped.failure().message.find("more than 5 redirects"));
  EXPECT_EQ(6u, registry.count("/blobs/"));
  // Each hop went back to the pool before the next took it.
  EXPECT_EQ(1u, c->http().connectionsOpened());
}

// A redirect's body is not read to its end, and an error's body is kept
// only in part: a server may send either without end (here 64 MiB, of which
// at most what the sockets buffer went out).
TEST_F(RegistryTest, RedirectAndErrorBodiesAreReadOnlyInPart) {
  FakeRegistry registry, storage;
  const std::string digest = storage.addBlob("the layer");
  auto redirect = fault("/blobs/", 302, 1, {{"Location", storage.url() + "/v2/library/app/blobs/" + digest}});
  redirect.body = std::string(64 << 20, 'r');
  registry.fail(redirect);
  auto c = client(options(fastRetry(1)));
  auto sink = std::make_shared<StringSink>();
  AWAIT_READY(c->streamBlob(repo(registry), blobOf(digest, 9), sink));
  EXPECT_EQ("the layer", sink->data());
  EXPECT_LT(registry.bodyBytesSent(), std::size_t{32} << 20);

  FakeRegistry failing;
  auto error = fault("/manifests/", 500, 1);
  error.body = std::string(64 << 20, 'e');
  failing.fail(error);
  Future<FetchedManifest> fetched = c->fetchManifest(repo(failing), "v1");
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, fetched);
  EXPECT_NE(std::string::npos, fetched.failure().message.find("HTTP 500")) << fetched.failure().message;
  EXPECT_LT(failing.bodyBytesSent(), std::size_t{32} << 20);
}

// Schema 1 descriptors carry no size: such a blob is bounded by the layer
// size limit instead.
TEST_F(RegistryTest, ABlobWithoutASizeIsBounded) {
  FakeRegistry registry;
  const std::string content(1 << 20, 'x');
  const std::string digest = registry.addBlob(content);
  RegistryOptions o = options(fastRetry(1));
  o.maxUnsizedBlobBytes = 64 << 10;
  auto c = client(o);
  Future<Nothing> streamed = c->streamBlob(repo(registry), blobOf(digest, -1), std::make_shared<StringSink>());
  AWAIT_EXPECT_ERROR(ErrorKind::ResourceExhausted, streamed);
  EXPECT_NE(std::string::npos, streamed.failure().message.find("--max_layer_bytes")) << streamed.failure().message;
  o.maxUnsizedBlobBytes = 1 << 20;
  auto sink = std::make_shared<StringSink>();
  AWAIT_READY(client(o)->streamBlob(repo(registry), blobOf(digest, -1), sink));
  EXPECT_TRUE(sink->data() == content);
}

TEST_F(RegistryTest, BrokenBlobResumesWithRange) {
  FakeRegistry registry;
  std::string content(3 << 20, 'x');
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 7 % 251);
  const std::string digest = registry.addBlob(content);
  registry.dropBlobsAfter(1 << 20, 2);
  auto c = client();
  auto sink = std::make_shared<StringSink>();
  AWAIT_READY(c->streamBlob(repo(registry), blobOf(digest, content.size()), sink));
  EXPECT_TRUE(sink->data() == content);
  const auto seen = registry.requests();
  ASSERT_EQ(3u, seen.size());
  EXPECT_EQ("", seen[0].range);
  EXPECT_EQ("bytes=1048576-", seen[1].range);
  EXPECT_EQ("bytes=2097152-", seen[2].range);
}

TEST_F(RegistryTest, ServerThatIgnoresRangeIsHandled) {
  FakeRegistry registry;
  std::string content(2 << 20, 'y');
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 13 % 253);
  const std::string digest = registry.addBlob(content);
  registry.dropBlobsAfter(700'000, 1);
  registry.ignoreRange();
  auto c = client();
  auto sink = std::make_shared<StringSink>();
  AWAIT_READY(c->streamBlob(repo(registry), blobOf(digest, content.size()), sink));
  EXPECT_TRUE(sink->data() == content);
  EXPECT_EQ(2u, registry.count("/blobs/"));
}

TEST_F(RegistryTest, WrongDigestWrongSizeAndTruncationAreErrors) {
  FakeRegistry registry;
  const std::string digest = sha256Digest("the real layer");
  registry.putBlob(digest, "a different layer");
  auto c = client();
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch,
                     c->streamBlob(repo(registry), blobOf(digest, 17), std::make_shared<StringSink>()));
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, c->readBlob(repo(registry), blobOf(digest, 17), 1024));
  const std::string honest = registry.addBlob("twelve bytes");
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch,
                     c->streamBlob(repo(registry), blobOf(honest, 5), std::make_shared<StringSink>()));
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch,
                     c->streamBlob(repo(registry), blobOf(honest, 50), std::make_shared<StringSink>()));
  // Always cut short: resumed a bounded number of times, then a clear error.
  registry.dropBlobsAfter(4, 1000);
  registry.ignoreRange();
  Future<Nothing> cut = c->streamBlob(repo(registry), blobOf(honest, 12), std::make_shared<StringSink>());
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, cut);
  EXPECT_NE(std::string::npos, cut.failure().message.find("closed before the end of the body"));
  EXPECT_EQ(4u, registry.count("/blobs/" + honest) - 2);
}

// A body of known length is read past Beast's parser, straight into the
// chunks. What came in with its header comes first: when the server sends
// header and body in one write (sendPastBlobs), that is up to 64 KiB, many
// chunks when chunks are small. Every byte arrives in order, and no write to
// the sink is larger than a chunk.
TEST_F(RegistryTest, ABodyReadPastTheParserArrivesWholeInChunks) {
  FakeRegistry registry;
  std::string blob(300001, '\0');
  for (std::size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 7 + i / 251);
  const std::string digest = registry.addBlob(blob);
  for (const bool oneWrite : {false, true}) {
    registry.sendPastBlobs(oneWrite ? "!" : "");
    for (const std::size_t chunk : {std::size_t{1000}, std::size_t{256 * 1024}}) {
      SCOPED_TRACE(std::string(oneWrite ? "header and body in one write" : "header, then body") + ", chunks of " +
                   std::to_string(chunk));
      RegistryOptions o = options();
      o.http.chunkBytes = chunk;
      auto c = client(o);
      auto sink = std::make_shared<StringSink>();
      AWAIT_EXPECT_READY(c->streamBlob(repo(registry), blobOf(digest, blob.size()), sink));
      EXPECT_EQ(blob, sink->data());
      EXPECT_LE(sink->largest(), chunk);
    }
  }
}

// A server that sends more than its Content-Length: the body is what the
// length says, and the connection, whose socket holds the rest, is not used
// again. Reused, the extra bytes would be read as the answer to the next
// request ("lies!" as the second blob, a digest mismatch). The blobs are
// larger than what the header's read takes, so the extra bytes are still in
// the socket when the body ends; a small one's come in with the header, and
// go with the exchange.
TEST_F(RegistryTest, BytesPastTheBodyRetireTheConnection) {
  FakeRegistry registry;
  const std::string firstBytes = testing::pseudoRandomBytes(300000, 1);
  const std::string secondBytes = testing::pseudoRandomBytes(300000, 2);
  const std::string first = registry.addBlob(firstBytes);
  const std::string second = registry.addBlob(secondBytes);
  for (const std::size_t size : {firstBytes.size(), std::size_t{14}}) {
    SCOPED_TRACE("a body of " + std::to_string(size) + " bytes");
    const std::string small = registry.addBlob(firstBytes.substr(0, size));
    registry.sendPastBlobs("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlies!");
    auto c = client();
    const std::size_t before = registry.connectionsAccepted();
    auto sink = std::make_shared<StringSink>();
    AWAIT_EXPECT_READY(c->streamBlob(repo(registry), blobOf(small, size), sink));
    EXPECT_EQ(firstBytes.substr(0, size), sink->data());
    registry.sendPastBlobs("");
    const std::size_t asked = registry.count("/blobs/" + second);
    auto next = std::make_shared<StringSink>();
    AWAIT_EXPECT_READY(c->streamBlob(repo(registry), blobOf(second, secondBytes.size()), next));
    EXPECT_EQ(secondBytes, next->data());
    EXPECT_EQ(asked + 1, registry.count("/blobs/" + second))
        << "the second blob was asked for on the first's connection";
    EXPECT_EQ(before + 2, registry.connectionsAccepted());
  }
}

TEST_F(RegistryTest, TrickleIsAStall) {
  FakeRegistry registry;
  const std::string digest = registry.addBlob(std::string(1000, 'z'));
  registry.trickle(20);  // 50 bytes/s
  RegistryOptions o = options(fastRetry(1));
  o.http.stallWindow = 1s;
  o.http.minBytesPerSecond = 1000;
  auto c = client(o);
  Future<Nothing> stalled = c->streamBlob(repo(registry), blobOf(digest, 1000), std::make_shared<StringSink>());
  AWAIT_EXPECT_ERROR(ErrorKind::Timeout, stalled);
  EXPECT_NE(std::string::npos, stalled.failure().message.find("stalled"));
}

TEST_F(RegistryTest, SlowConsumerSlowsTheSocket) {
  FakeRegistry registry;
  const std::size_t size = 64u << 20;
  const std::string digest = registry.addBlob(std::string(size, 'q'));
  RegistryOptions o = options();
  o.http.stallWindow = 60s;
  auto c = client(o);
  auto sink = std::make_shared<HeldSink>();
  Future<Nothing> transfer = c->streamBlob(repo(registry), blobOf(digest, size), sink);
  waitUntil([&] { return sink->received() > 0; });
  // Until the server stops sending: blocked by back-pressure, or done
  // because nothing pushed back (then the check below fails).
  waitUntilSteady([&] { return registry.bodyBytesSent(); });
  // One chunk taken; the rest waits in socket buffers or in the server.
  EXPECT_EQ(sink->largest(), sink->received());
  EXPECT_LT(registry.bodyBytesSent(), size / 2);
  EXPECT_TRUE(transfer.isPending());
  sink->release();
  AWAIT_EXPECT_READY(transfer);
  EXPECT_EQ(size, sink->received());
  EXPECT_LE(sink->largest(), o.http.chunkBytes);
}

// Stalls are judged per phase: time the consumer (the extraction) holds
// the bytes is not time on the wire, so a slow disk or a busy extractor
// never reads as a stalled download, however long it holds.
TEST_F(RegistryTest, AConsumerThatHoldsTheBytesIsNotAStall) {
  FakeRegistry registry;
  const std::size_t size = 8u << 20;
  const std::string digest = registry.addBlob(std::string(size, 'h'));
  RegistryOptions o = options(fastRetry(1));
  // The window is also how long the response's header may take: a second,
  // so that a slow fake registry (a sanitizer, a loaded machine) is not
  // what this test sees. Counted, the hold would be a stall: the two
  // chunks taken before it are 512 KiB, under a window's 1 MiB.
  o.http.stallWindow = 1s;
  o.http.minBytesPerSecond = 1 << 20;
  auto c = client(o);
  auto sink = std::make_shared<HeldSink>();
  Future<Nothing> transfer = c->streamBlob(repo(registry), blobOf(digest, size), sink);
  ASSERT_TRUE(waitUntil([&] { return sink->received() > 0 || !transfer.isPending(); }));
  ASSERT_TRUE(transfer.isPending()) << (transfer.isFailed() ? transfer.failure().message : "");
  // Held for three stall windows: the condition under test is time passing.
  const auto heldUntil = std::chrono::steady_clock::now() + 3 * o.http.stallWindow;
  waitUntil([&] { return std::chrono::steady_clock::now() >= heldUntil; });
  EXPECT_TRUE(transfer.isPending()) << (transfer.isFailed() ? transfer.failure().message : "");
  sink->release();
  AWAIT_EXPECT_READY(transfer);
  EXPECT_EQ(size, sink->received());
}

TEST_F(RegistryTest, DiscardingATransferClosesItsConnection) {
  FakeRegistry registry;
  const std::size_t size = 32u << 20;
  const std::string digest = registry.addBlob(std::string(size, 'd'));
  auto c = client();
  auto sink = std::make_shared<HeldSink>();
  Future<Nothing> transfer = c->streamBlob(repo(registry), blobOf(digest, size), sink);
  ASSERT_TRUE(waitUntil([&] { return sink->received() > 0; }));
  transfer.discard();
  AWAIT_EXPECT_DISCARDED(transfer);
  sink->release();
  // The connection was closed, not pooled: the next request opens another.
  const std::string small = registry.addBlob("small");
  AWAIT_EXPECT_READY(c->streamBlob(repo(registry), blobOf(small, 5), std::make_shared<StringSink>()));
  EXPECT_EQ(2u, c->http().connectionsOpened());
}

// A consumer whose write never completes (its promise is gone) ends the
// transfer with an error instead of leaving it pending.
TEST_F(RegistryTest, ASinkThatAbandonsAWriteFailsTheTransfer) {
  class AbandoningSink : public ByteSink {
   public:
    Future<Nothing> write(std::string_view) override { return Promise<Nothing>().future(); }
  };
  FakeRegistry registry;
  const std::string digest = registry.addBlob("abandoned");
  auto c = client(options(fastRetry(1)));
  Future<Nothing> transfer = c->streamBlob(repo(registry), blobOf(digest, 9), std::make_shared<AbandoningSink>());
  AWAIT_EXPECT_FAILED(transfer);
  EXPECT_NE(std::string::npos, transfer.failure().message.find("The body consumer went away"))
      << transfer.failure().message;
}

TEST_F(RegistryTest, ConnectionsAreReused) {
  FakeRegistry registry;
  Published image = publish(registry, "test/app", "v1", {"1", "2", "3", "4"});
  auto c = client();
  for (const auto& digest : image.layerDigests) {
    AWAIT_READY(c->streamBlob(repo(registry), blobOf(digest, 1), std::make_shared<StringSink>()));
  }
  EXPECT_EQ(1u, registry.connectionsAccepted());
  EXPECT_EQ(1u, c->http().connectionsOpened());

  FakeRegistry closing;
  closing.closeAfterEachResponse();
  Published again = publish(closing, "test/app", "v1", {"1", "2", "3"});
  for (const auto& digest : again.layerDigests) {
    AWAIT_READY(c->streamBlob(repo(closing), blobOf(digest, 1), std::make_shared<StringSink>()));
  }
  EXPECT_EQ(3u, closing.connectionsAccepted());
}

TEST_F(RegistryTest, PlainHttpOnlyWhereAllowed) {
  FakeRegistry registry;
  auto http = HttpClient::create(runtime_, HttpOptions{});
  ASSERT_TRUE(http.isSome());
  HttpRequest request;
  request.url = *parseUrl(registry.url() + "/v2/");
  Future<HttpResponse> refused = (*http)->fetch(request);
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, refused);
  EXPECT_EQ(0u, registry.connectionsAccepted());
  EXPECT_TRUE(plainHttpAllowed({}, "127.0.0.1", 5000));
  EXPECT_TRUE(plainHttpAllowed({}, "127.0.0.2", 443));
  EXPECT_TRUE(plainHttpAllowed({}, "localhost", 80));
  EXPECT_TRUE(plainHttpAllowed({}, "::1", 5000));
  EXPECT_FALSE(plainHttpAllowed({}, "128.0.0.1", 5000));
  EXPECT_FALSE(plainHttpAllowed({}, "registry.example.com", 5000));
  EXPECT_TRUE(plainHttpAllowed({"registry.example.com:5000"}, "registry.example.com", 5000));
  EXPECT_FALSE(plainHttpAllowed({"registry.example.com:5000"}, "registry.example.com", 5001));
  EXPECT_TRUE(plainHttpAllowed({"[fd00::1]:5000"}, "fd00::1", 5000));
  // Every registry URL says https; how it is reached is the TLS mode.
  EXPECT_EQ("https", registryUrl("registry.example.com:5000", "/v2/")->scheme);
  EXPECT_EQ("https", registryUrl("127.0.0.1:5000", "/v2/")->scheme);
  EXPECT_EQ("https", registryUrl("localhost:80", "/v2/")->scheme);
  EXPECT_EQ(TlsMode::Verify, registryTlsMode({}, "registry.example.com", 5000));
  EXPECT_EQ(TlsMode::VerifyOrPlain, registryTlsMode({}, "127.0.0.1", 443));
  EXPECT_EQ(TlsMode::VerifyOrPlain, registryTlsMode({}, "127.1.2.3", 5000));
  EXPECT_EQ(TlsMode::VerifyOrPlain, registryTlsMode({}, "localhost", 5000));
  EXPECT_EQ(TlsMode::AnyCertOrPlain, registryTlsMode({"127.0.0.1:5000"}, "127.0.0.1", 5000));
  EXPECT_EQ(TlsMode::AnyCertOrPlain, registryTlsMode({"r.example.com:5000"}, "r.example.com", 5000));
}

// The loopback rule's first try, at the HTTP client: plain http only for a
// request without credentials or a body (one with them tries TLS first,
// which the fake answers as HTTP); a first try answered with a redirect is
// taken for a TLS server's answer (nginx's error_page 497): TLS is tried,
// the origin is then found plain, and the redirect followed.
TEST_F(RegistryTest, ALoopbackFirstTryIsPlainOnlyWithoutCredentialsAndARedirectTriesTls) {
  FakeRegistry registry;
  HttpOptions options;
  options.tlsMode = [](const std::string&, int) { return TlsMode::VerifyOrPlain; };
  options.allowPlainHttp = [](const std::string&, int) { return true; };
  HttpRequest request;
  request.url = *parseUrl("https://" + registry.hostPort() + "/v2/");
  request.authorization = "Basic c2VjcmV0";
  auto withCredentials = HttpClient::create(runtime_, options);
  ASSERT_TRUE(withCredentials.isSome());
  AWAIT_READY((*withCredentials)->fetch(request));
  EXPECT_EQ(1u, registry.notHttpConnections());
  request.authorization.reset();
  request.method = "POST";
  request.body = "grant_type=refresh_token&refresh_token=secret";
  auto withBody = HttpClient::create(runtime_, options);
  ASSERT_TRUE(withBody.isSome());
  AWAIT_READY((*withBody)->fetch(request));
  EXPECT_EQ(2u, registry.notHttpConnections()) << "a body tries TLS first too";
  request.method = "GET";
  request.body.clear();

  request.authorization.reset();
  auto bare = HttpClient::create(runtime_, options);
  ASSERT_TRUE(bare.isSome());
  AWAIT_READY((*bare)->fetch(request));
  EXPECT_EQ(2u, registry.notHttpConnections()) << "a first try without credentials goes plain";

  FakeRegistry::Fault moved;
  moved.match = "/v2/moved";
  moved.status = 301;
  moved.headers = {{"Location", registry.url() + "/v2/"}};
  moved.times = 2;
  registry.fail(moved);
  request.url = *parseUrl("https://" + registry.hostPort() + "/v2/moved");
  auto redirected = HttpClient::create(runtime_, options);
  ASSERT_TRUE(redirected.isSome());
  Future<HttpResponse> followed = (*redirected)->fetch(request);
  AWAIT_READY(followed);
  EXPECT_EQ(200, followed->status);
  EXPECT_TRUE(followed->followedRedirect);
  EXPECT_EQ(3u, registry.notHttpConnections()) << "the redirect sent the first try to TLS";
  EXPECT_TRUE((*redirected)->reachesPlain(request.url));
}

// Header injection: a value with CR/LF (or any control character) is
// refused before anything is sent, and a token service's token with one
// never becomes a header.
TEST_F(RegistryTest, ControlCharactersNeverReachAHeader) {
  FakeRegistry registry;
  HttpOptions options;
  options.allowPlainHttp = [](const std::string&, int) { return true; };
  auto http = HttpClient::create(runtime_, options);
  ASSERT_TRUE(http.isSome());
  HttpRequest request;
  request.url = *parseUrl(registry.url() + "/v2/");
  request.authorization = "Bearer abc\r\nX-Injected: 1";
  Future<HttpResponse> refused = (*http)->fetch(request);
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, refused);
  EXPECT_NE(std::string::npos, refused.failure().message.find("its authorization holds a control character"))
      << refused.failure().message;
  EXPECT_EQ(std::string::npos, refused.failure().message.find("abc")) << "the secret stays out of the message";
  request.authorization.reset();
  request.headers.emplace_back("Accept", std::string("a\0b", 3));
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, (*http)->fetch(request));
  EXPECT_EQ(0u, registry.connectionsAccepted()) << "something was sent";

  Published image = publish(registry, "test/app", "v1", {"layer one"});
  registry.requireBearer();
  FakeRegistry::Fault lying;
  lying.match = "/token";
  lying.status = 200;
  lying.headers = {{"Content-Type", "application/json"}};
  lying.body = R"({"token":"abc\r\nX-Injected: 1"})";
  registry.fail(lying);
  auto c = client();
  Future<FetchedManifest> fetched = c->fetchManifest(repo(registry), "v1");
  AWAIT_EXPECT_ERROR(ErrorKind::Corruption, fetched);
  EXPECT_NE(std::string::npos, fetched.failure().message.find("token with a control character"))
      << fetched.failure().message;
  for (const auto& seen : registry.requests()) {
    EXPECT_EQ(std::string::npos, seen.authorization.find("abc")) << seen.target << ": " << seen.authorization;
  }
}

TEST_F(RegistryTest, ConnectionRefusedIsUnavailableAfterRetries) {
  int port;
  {
    FakeRegistry gone;
    port = gone.port();
  }
  auto c = client();
  Repository r{*parseUrl("http://127.0.0.1:" + std::to_string(port) + "/"), "127.0.0.1", "test/app", {}};
  Future<FetchedManifest> refused = c->fetchManifest(r, "v1");
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, refused);
  EXPECT_NE(std::string::npos, refused.failure().message.find("Gave up after 4 attempts"));
}

TEST_F(RegistryTest, ResolvePicksThePlatformFromAnIndex) {
  FakeRegistry registry;
  Published amd = publish(registry, "test/multi", "amd64-only", {"amd layer"}, "amd64");
  Published arm = publish(registry, "test/multi", "arm64-only", {"arm layer 1", "arm layer 2"}, "arm64");
  const std::string index = R"({"schemaVersion":2,"mediaType":")" + std::string(mediatype::kOciIndex) +
                            R"(","manifests":[)" +
                            descriptorJson(mediatype::kDockerSchema2, arm.manifestDigest, 100,
                                           R"(,"platform":{"os":"linux","architecture":"arm64","variant":"v8"})") +
                            "," +
                            descriptorJson(mediatype::kDockerSchema2, amd.manifestDigest, 100,
                                           R"(,"platform":{"os":"linux","architecture":"amd64"})") +
                            "]}";
  const std::string indexDigest = registry.putManifest("test/multi", "latest", index, mediatype::kOciIndex);
  auto c = client();
  messages::Platform amd64;
  amd64.set_os("linux");
  amd64.set_architecture("amd64");
  Future<messages::ResolvedImage> resolved = c->resolve(reference(registry, "test/multi"), amd64);
  AWAIT_READY(resolved);
  EXPECT_EQ(amd.manifestDigest, resolved->manifest_digest());
  EXPECT_EQ(indexDigest, resolved->index_digest());
  EXPECT_EQ(1, resolved->manifest().layers_size());
  EXPECT_EQ("/bin/sh", resolved->config().cmd(0));
  EXPECT_EQ(amd.configDigest, sha256Digest(resolved->config_json()));

  messages::Platform arm64;
  arm64.set_os("linux");
  arm64.set_architecture("arm64");
  Future<messages::ResolvedImage> armResolved = c->resolve(reference(registry, "test/multi"), arm64);
  AWAIT_READY(armResolved);
  EXPECT_EQ(2, armResolved->manifest().layers_size());

  messages::Platform s390x;
  s390x.set_os("linux");
  s390x.set_architecture("s390x");
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, c->resolve(reference(registry, "test/multi"), s390x));
}

TEST_F(RegistryTest, MirrorsAreTriedInOrderAndFallThrough) {
  FakeRegistry upstream, emptyMirror;
  int downPort;
  {
    FakeRegistry down;
    downPort = down.port();
  }
  publish(upstream, "test/app", "v1", {"upstream layer"});
  RegistryOptions o = options(fastRetry(1));
  o.mirrored = upstream.hostPort();
  o.mirrors = {"http://127.0.0.1:" + std::to_string(downPort), emptyMirror.url()};
  auto c = client(o);
  Future<messages::ResolvedImage> resolved = c->resolve(reference(upstream, "test/app:v1"), hostPlatform());
  AWAIT_READY(resolved);
  // The endpoint as named (https); it was reached over plain http.
  EXPECT_EQ("https://" + upstream.hostPort() + "/", resolved->endpoint());
  EXPECT_EQ(1u, emptyMirror.count("/manifests/v1"));

  // A mirror that has the image serves it; the upstream is not asked.
  FakeRegistry goodMirror;
  Published mirrored = publish(goodMirror, "test/app", "v1", {"mirror layer"});
  o.mirrors = {goodMirror.url()};
  auto c2 = client(o);
  const std::size_t upstreamBefore = upstream.requests().size();
  Future<messages::ResolvedImage> fromMirror = c2->resolve(reference(upstream, "test/app:v1"), hostPlatform());
  AWAIT_READY(fromMirror);
  EXPECT_EQ(mirrored.manifestDigest, fromMirror->manifest_digest());
  EXPECT_EQ(upstreamBefore, upstream.requests().size());
}

// A mirror that sent part of a blob and broke is not followed by the
// upstream in the same stream: the transfer fails with what the mirror sent
// only, and says where a fresh transfer starts. From there, the upstream's
// blob whole.
TEST_F(RegistryTest, ABlobThatBrokeAfterBytesIsNeverContinuedFromAnotherSource) {
  FakeRegistry upstream, mirror;
  const std::string layer(4096, 'u');
  publish(upstream, "test/app", "v1", {layer});
  Published mirrored = publish(mirror, "test/app", "v1", {layer});
  mirror.putBlob(mirrored.layerDigests[0], std::string(4096, 'm'));  // a lie of the same size
  mirror.dropBlobsAfter(1024, 100, {mirrored.layerDigests[0].substr(7)});
  mirror.ignoreRange();
  RegistryOptions o = options(fastRetry(2));
  o.mirrored = upstream.hostPort();
  o.mirrors = {mirror.url()};
  o.http.chunkBytes = 1024;
  auto puller = RegistryPuller::create(runtime_, o, 2);
  ASSERT_TRUE(puller.isSome());
  messages::Image image;
  *image.mutable_reference() = reference(upstream, "test/app:v1");
  Future<messages::ResolvedImage> resolved = (*puller)->resolve(image, hostPlatform());
  AWAIT_READY(resolved);
  EXPECT_EQ(mirror.url() + "/", resolved->endpoint());
  const messages::Descriptor blob = resolved->manifest().layers(0);

  auto spliced = std::make_shared<StringSink>();
  auto sources = std::make_shared<BlobSources>();
  auto broken = (*puller)->fetchBlob(image, resolved.get(), blob, spliced, sources);
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, broken);
  EXPECT_EQ(std::string(1024, 'm'), spliced->data()) << "nothing of the upstream's after the mirror's";
  EXPECT_EQ(0u, upstream.count(blob.digest().substr(7)));
  ASSERT_EQ(std::optional<std::size_t>(1), sources->restartAt());

  auto fresh = std::make_shared<StringSink>();
  auto again = std::make_shared<BlobSources>(*sources->restartAt());
  AWAIT_READY((*puller)->fetchBlob(image, resolved.get(), blob, fresh, again));
  EXPECT_EQ(layer, fresh->data());
  EXPECT_EQ(std::nullopt, again->restartAt()) << "the upstream is the last source";
}

TEST_F(RegistryTest, PullerBoundsBlobsInFlight) {
  FakeRegistry registry;
  std::vector<std::string> layers;
  for (int i = 0; i < 6; ++i) layers.push_back(std::string(1 << 20, static_cast<char>('a' + i)));
  publish(registry, "test/app", "v1", layers);
  auto puller = RegistryPuller::create(runtime_, options(), 2);
  ASSERT_TRUE(puller.isSome());
  messages::Image image;
  *image.mutable_reference() = reference(registry, "test/app:v1");
  Future<messages::ResolvedImage> resolved = (*puller)->resolve(image, hostPlatform());
  AWAIT_READY(resolved);
  std::vector<std::shared_ptr<HeldSink>> sinks;
  std::vector<Future<Nothing>> transfers;
  // How many transfers hold bytes their sink has not let go of, at most:
  // counted when a sink first gets bytes and when the test releases it.
  std::mutex mutex;
  std::size_t holding = 0, most = 0;
  for (const auto& layer : resolved->manifest().layers()) {
    sinks.push_back(std::make_shared<HeldSink>([&] {
      std::lock_guard lock(mutex);
      most = std::max(most, ++holding);
    }));
    transfers.push_back((*puller)->fetchBlob(image, resolved.get(), layer, sinks.back()));
  }
  // Every transfer was asked for at once; two may run.
  waitUntil([&] { return sinks[0]->received() > 0 && sinks[1]->received() > 0; });
  for (std::size_t released = 0; released < sinks.size(); ++released) {
    std::shared_ptr<HeldSink> next;  // one whose bytes came, not yet let go of
    if (!waitUntil([&] {
          for (auto& sink : sinks) {
            if (sink->received() > 0 && !sink->released()) next = sink;
          }
          return next != nullptr;
        })) {
      break;
    }
    // A transfer starts only when one before it ended: the config and two
    // layers, plus one per layer let go of so far.
    EXPECT_LE(registry.count("/blobs/"), 3 + released);
    {
      std::lock_guard lock(mutex);
      --holding;
    }
    next->release();
  }
  for (auto& transfer : transfers) AWAIT_EXPECT_READY(transfer);
  EXPECT_EQ(2u, most);
  EXPECT_EQ(7u, registry.count("/blobs/"));
  for (std::size_t i = 0; i < sinks.size(); ++i) EXPECT_EQ(layers[i].size(), sinks[i]->received());
}

// The bound is per registry: one held transfer from A leaves B's free. On
// one registry, waiting transfers go by their image's priority, and one
// more urgent than all that run does not wait.
TEST_F(RegistryTest, PullerBoundsEachRegistryAndOrdersItsQueueByPriority) {
  FakeRegistry a, b;
  publish(a, "test/app", "v1",
          {std::string(4096, 'h'), std::string(4096, 'l'), std::string(4096, 'u'), std::string(4096, 'x')});
  publish(b, "test/app", "v1", {std::string(4096, 'b')});
  auto puller = RegistryPuller::create(runtime_, options(), 1);
  ASSERT_TRUE(puller.isSome());
  messages::Image fromA, fromB;
  *fromA.mutable_reference() = reference(a, "test/app:v1");
  *fromB.mutable_reference() = reference(b, "test/app:v1");
  Future<messages::ResolvedImage> resolvedA = (*puller)->resolve(fromA, hostPlatform());
  Future<messages::ResolvedImage> resolvedB = (*puller)->resolve(fromB, hostPlatform());
  AWAIT_READY(resolvedA);
  AWAIT_READY(resolvedB);
  const auto& layersA = resolvedA->manifest().layers();
  auto held = std::make_shared<HeldSink>();
  Future<Nothing> first = (*puller)->fetchBlob(fromA, resolvedA.get(), layersA[0], held);
  ASSERT_TRUE(waitUntil([&] { return held->received() > 0; }));
  // A's slot is taken: these two wait, the later one more urgent.
  std::mutex mutex;
  std::vector<std::string> order;
  auto recording = [&](const std::string& name) {
    return std::make_shared<HeldSink>([&, name] {
      std::lock_guard lock(mutex);
      order.push_back(name);
    });
  };
  auto lowSink = recording("low"), soonerSink = recording("sooner"), urgentSink = recording("urgent");
  lowSink->release();
  soonerSink->release();
  // The urgent one holds the extra slot until the test lets go.
  Future<Nothing> low = (*puller)->fetchBlob(fromA, resolvedA.get(), layersA[1], lowSink);
  messages::Image sooner = fromA, urgent = fromA;
  sooner.set_priority(3);
  urgent.set_priority(5);
  Future<Nothing> high = (*puller)->fetchBlob(urgent, resolvedA.get(), layersA[3], urgentSink);
  ASSERT_TRUE(waitUntil([&] { return urgentSink->received() > 0; })) << "the urgent transfer waited";
  Future<Nothing> soon = (*puller)->fetchBlob(sooner, resolvedA.get(), layersA[2], soonerSink);
  // B has a slot of its own.
  auto fromBSink = std::make_shared<StringSink>();
  AWAIT_EXPECT_READY((*puller)->fetchBlob(fromB, resolvedB.get(), resolvedB->manifest().layers(0), fromBSink));
  EXPECT_EQ(std::string(4096, 'b'), fromBSink->data());
  EXPECT_TRUE(low.isPending());
  EXPECT_TRUE(soon.isPending()) << "3 is not above the urgent 5: no second extra slot";
  held->release();
  urgentSink->release();
  AWAIT_EXPECT_READY(first);
  AWAIT_EXPECT_READY(high);
  AWAIT_EXPECT_READY(soon);
  AWAIT_EXPECT_READY(low);
  std::lock_guard lock(mutex);
  EXPECT_EQ((std::vector<std::string>{"urgent", "sooner", "low"}), order);
}

}  // namespace
}  // namespace prov::fetcher
