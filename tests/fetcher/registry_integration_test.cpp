// The registry client against the real registry server (Debian's
// docker-registry) with images pushed by skopeo: plain HTTP, TLS with a test
// CA and htpasswd Basic auth, Docker schema 2, OCI, and a multi-platform index;
// and through a real HTTP proxy (Debian's tinyproxy).

#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "actors/actors.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/proxy.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "testkit/files.hpp"
#include "testkit/image_builder.hpp"
#include "testkit/real_registry.hpp"
#include "testkit/tiny_proxy.hpp"
#include "tests/support/await.hpp"
#include "tests/support/fake_registry.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::fetcher {
namespace {

using actors::Future;
using testing::ImageSpec;
using testing::OciLayout;
using testing::RealRegistry;
using testing::TarEntry;
using testing::TinyProxy;

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

  std::unique_ptr<TinyProxy> startProxy(TinyProxy::Options options = {}) {
    std::string error;
    auto proxy = TinyProxy::start(sandbox() / "proxy", options, error);
    EXPECT_NE(nullptr, proxy) << error;
    return proxy;
  }

  // A registry with `repo`:v1 pushed (an image marked `marker`), or null.
  std::unique_ptr<RealRegistry> registryWith(RealRegistry::Options options, const std::string& repo,
                                             const std::string& marker, testing::BuiltImage& built) {
    auto registry = startRegistry(options);
    if (!registry) return nullptr;
    OciLayout layout(sandbox() / ("layout-" + marker));
    built = layout.addImage(smallImage("amd64", marker));
    layout.tag(built, "v1");
    auto pushed = registry->push("oci:" + layout.dir().string() + ":v1", repo + ":v1", "v2s2");
    EXPECT_EQ(0, pushed.status) << pushed.output;
    return pushed.status == 0 ? std::move(registry) : nullptr;
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

// A test binary that dies (a crash, a CI timeout) takes its servers with
// it instead of leaving them running under init: a process starts a
// registry and a proxy and ends without stopping them. This one is their
// subreaper meanwhile, so that it sees them end and reaps them (init here
// left such orphans as zombies for a long while).
TEST_F(RealRegistryTest, ServersDieWithTheProcessThatStartedThem) {
  ASSERT_EQ(0, ::prctl(PR_SET_CHILD_SUBREAPER, 1));
  struct NoLongerSubreaper {
    ~NoLongerSubreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  } restore;
  int pipeFds[2];
  ASSERT_EQ(0, ::pipe(pipeFds));
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::string error;
    auto registry = RealRegistry::start(sandbox() / "orphan-registry", {}, error);
    auto proxy = TinyProxy::start(sandbox() / "orphan-proxy", {}, error);
    if (!registry || !proxy) std::fprintf(stderr, "%s\n", error.c_str());
    const pid_t servers[2] = {registry ? registry->pid() : -1, proxy ? proxy->pid() : -1};
    const bool written = ::write(pipeFds[1], servers, sizeof(servers)) == static_cast<ssize_t>(sizeof(servers));
    ::_exit(written ? 0 : 1);  // no destructor runs: as if it crashed
  }
  ::close(pipeFds[1]);
  pid_t servers[2] = {-1, -1};
  const ssize_t got = ::read(pipeFds[0], servers, sizeof(servers));
  ::close(pipeFds[0]);
  int status = 0;
  EXPECT_EQ(child, ::waitpid(child, &status, 0));
  EXPECT_EQ(static_cast<ssize_t>(sizeof(servers)), got);
  for (const pid_t server : servers) {
    EXPECT_GT(server, 0) << "a server did not start";
    if (server <= 0) continue;
    // Now this process's child, exited or not: its end seen through a pidfd.
    const int exited = static_cast<int>(::syscall(SYS_pidfd_open, server, 0));
    EXPECT_GE(exited, 0) << std::strerror(errno);
    pollfd ended{exited, POLLIN, 0};
    EXPECT_EQ(1, ::poll(&ended, 1, 10000)) << "server " << server << " outlived the process that started it";
    if (exited >= 0) ::close(exited);
    if (ended.revents == 0) ::kill(server, SIGKILL);
    EXPECT_EQ(server, ::waitpid(server, &status, 0));
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  }
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

  // One that is not PEM is parsed, and named, at the first TLS connection:
  // creating a puller costs no CA parsing; the failure is not retried.
  RegistryOptions garbledCa = options;
  garbledCa.http.extraCaFile = (sandbox() / "garbled.pem").string();
  testing::writeFile(garbledCa.http.extraCaFile, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n");
  auto garbled = RegistryPuller::create(runtime_, garbledCa, 2);
  ASSERT_TRUE(garbled.isSome()) << garbled.error().message;
  // Preparing TLS early (the command line's pull does) reports nothing and
  // leaves the error to the connection.
  (*garbled)->client().http().prepareTls();
  runtime_.settle();
  Future<messages::ResolvedImage> unparsed = (*garbled)->resolve(image, platform("amd64"));
  AWAIT_EXPECT_ERROR(ErrorKind::IO, unparsed);
  EXPECT_NE(std::string::npos,
            unparsed.failure().message.find("Failed to load the CA bundle '" + garbledCa.http.extraCaFile + "'"))
      << unparsed.failure().message;
}

// The system's CAs are read at the first certificate to verify, not when a
// client is made (nor at a TLS attempt that finds plain http): a puller
// made before SSL_CERT_FILE names the test CA trusts it when it verifies.
TEST_F(RealRegistryTest, SystemCasAreReadAtTheFirstVerification) {
  testing::BuiltImage built;
  auto registry = registryWith({.tls = true}, "test/system-ca", "system-ca", built);
  ASSERT_NE(nullptr, registry);

  RegistryOptions options;  // no extra CA: the system's alone
  options.retry.maxAttempts = 1;
  auto puller = RegistryPuller::create(runtime_, options, 2);
  ASSERT_TRUE(puller.isSome());
  struct Environment {
    ~Environment() { ::unsetenv("SSL_CERT_FILE"); }
  } restore;
  ::setenv("SSL_CERT_FILE", registry->caFile().c_str(), 1);
  pullAndVerify(**puller, *parseNormalized(registry->hostPort() + "/test/system-ca:v1"), platform("amd64"), built,
                "system-ca");
}

// The hashed directory answers before the bundle: a chain whose CA is in
// SSL_CERT_DIR (under its subject hash, as c_rehash names it) verifies
// without SSL_CERT_FILE being read at all. The bundle here is a FIFO nobody
// writes, so reading it would hang the handshake. (The bundle read when the
// directory lacks the CA: SystemCasAreReadAtTheFirstVerification.)
TEST_F(RealRegistryTest, TheHashedDirectoryAnswersBeforeTheBundleIsRead) {
  testing::BuiltImage built;
  auto registry = registryWith({.tls = true}, "test/hashed-dir", "hashed-dir", built);
  ASSERT_NE(nullptr, registry);
  const std::filesystem::path certs = sandbox() / "certs";
  std::filesystem::create_directories(certs);
  FILE* pem = std::fopen(registry->caFile().c_str(), "r");
  ASSERT_NE(nullptr, pem);
  X509* ca = PEM_read_X509(pem, nullptr, nullptr, nullptr);
  std::fclose(pem);
  ASSERT_NE(nullptr, ca);
  char name[32];
  std::snprintf(name, sizeof(name), "%08lx.0", X509_subject_name_hash(ca));
  X509_free(ca);
  std::filesystem::copy_file(registry->caFile(), certs / name);
  const std::filesystem::path bundle = sandbox() / "bundle.pem";
  ASSERT_EQ(0, ::mkfifo(bundle.c_str(), 0600));

  RegistryOptions options;  // no extra CA: the system's alone
  options.retry.maxAttempts = 1;
  auto puller = RegistryPuller::create(runtime_, options, 2);
  ASSERT_TRUE(puller.isSome());
  // Undone before the puller goes (declared after it): a worker stuck on
  // the FIFO would keep the puller's process from stopping.
  struct Environment {
    std::filesystem::path bundle;
    ~Environment() {
      ::unsetenv("SSL_CERT_DIR");
      ::unsetenv("SSL_CERT_FILE");
      // A reader stuck on the FIFO (the bundle read after all) gets its end.
      const int fd = ::open(bundle.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd >= 0) ::close(fd);
    }
  } restore{bundle};
  ::setenv("SSL_CERT_DIR", certs.c_str(), 1);
  ::setenv("SSL_CERT_FILE", bundle.c_str(), 1);
  pullAndVerify(**puller, *parseNormalized(registry->hostPort() + "/test/hashed-dir:v1"), platform("amd64"), built,
                "hashed-dir");
}

// The scheme rule on loopback: a TLS registry named by its 127.0.0.1
// address is reached over TLS and verified (its CA given), after a first
// request over plain http that it answers as TLS; from then on the client
// goes to it over TLS directly. Without the CA the certificate error is the
// answer, never a retry over plain http; when listed as insecure it is
// reached over TLS without verification.
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
  messages::ResolvedImage resolved;
  resolved.set_endpoint("https://" + registry->hostPort());
  EXPECT_TRUE((*puller)->connectsPlain(resolved));  // not known yet: plain first
  pullAndVerify(**puller, ref, platform("amd64"), built, "loopback-tls");
  EXPECT_TRUE(plainFound.empty());
  // Found to speak TLS: a new connection there needs a handshake (the
  // store then lets one layer wait for the config's connection).
  EXPECT_FALSE((*puller)->connectsPlain(resolved));

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
  EXPECT_TRUE((*remembered)->connectsPlain(resolved));
  pullAndVerify(**remembered, ref, platform("amd64"), built, "loopback-tls");
  EXPECT_EQ(std::vector<std::string>{registry->hostPort() + " tls"}, plainFound);
  EXPECT_FALSE((*remembered)->connectsPlain(resolved));
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
  // Found plain once (the first request, over plain http), then remembered.
  EXPECT_EQ(std::vector<std::string>{registry->hostPort() + " plain"}, plainFound);
}

// Both proxies at `proxyUrl`.
ProxySettings throughProxy(const std::string& proxyUrl) {
  ProxySettings settings;
  settings.http = *parseProxy(proxyUrl, "test");
  settings.https = settings.http;
  return settings;
}

// A plain registry on loopback through the proxy (loopback is proxied
// unless no_proxy lists it): the TLS attempt goes through a CONNECT tunnel
// and finds plain http, then the requests go to the proxy in absolute form.
TEST_F(RealRegistryTest, PlainRegistryThroughProxy) {
  testing::BuiltImage built;
  auto registry = registryWith({}, "test/proxied", "proxied", built);
  ASSERT_NE(nullptr, registry);
  auto proxy = startProxy();
  ASSERT_NE(nullptr, proxy);

  RegistryOptions options;
  options.retry.maxAttempts = 1;
  options.http.proxy = throughProxy(proxy->url());
  // Through a proxy, loopback is the proxy's: a plain registry must be
  // listed as insecure, as Docker wants any plain registry to be.
  auto unlisted = RegistryPuller::create(runtime_, options, 2);
  messages::Image image;
  *image.mutable_reference() = *parseNormalized(registry->hostPort() + "/test/proxied:v1");
  Future<messages::ResolvedImage> refused = (*unlisted)->resolve(image, platform("amd64"));
  AWAIT_EXPECT_ERROR(ErrorKind::IO, refused);
  EXPECT_NE(std::string::npos,
            refused.failure().message.find("Failed to set up TLS with 'https://" + registry->hostPort() +
                                           "/v2/test/proxied/manifests/v1': the server does "
                                           "not speak TLS"))
      << refused.failure().message;
  // One proxy variable set: verified TLS only there too. With http_proxy
  // alone, https goes direct but plain http would go to the proxy (whose
  // loopback is not ours); with https_proxy alone, the https form goes
  // through its tunnel. No plain request reaches the proxy.
  for (const bool keepHttp : {true, false}) {
    RegistryOptions half = options;
    (keepHttp ? half.http.proxy.https : half.http.proxy.http).reset();
    auto puller = RegistryPuller::create(runtime_, half, 2);
    Future<messages::ResolvedImage> alsoRefused = (*puller)->resolve(image, platform("amd64"));
    AWAIT_EXPECT_ERROR(ErrorKind::IO, alsoRefused);
    EXPECT_NE(std::string::npos, alsoRefused.failure().message.find("the server does not speak TLS"))
        << (keepHttp ? "http_proxy: " : "https_proxy: ") << alsoRefused.failure().message;
    EXPECT_EQ(std::string::npos, proxy->log().find("GET http://" + registry->hostPort())) << proxy->log();
  }
  options.insecure = {registry->hostPort()};
  auto puller = RegistryPuller::create(runtime_, options, 2);
  ASSERT_TRUE(puller.isSome());
  pullAndVerify(**puller, *parseNormalized(registry->hostPort() + "/test/proxied:v1"), platform("amd64"), built,
                "proxied");
  const std::string log = proxy->log();
  EXPECT_NE(std::string::npos, log.find("CONNECT " + registry->hostPort() + " HTTP/1.1")) << log;
  EXPECT_NE(std::string::npos, log.find("GET http://" + registry->hostPort() + "/v2/test/proxied/manifests/v1")) << log;
  EXPECT_NE(std::string::npos, log.find("GET http://" + registry->hostPort() + "/v2/test/proxied/blobs/sha256:"))
      << log;
}

// A TLS registry through the proxy: a CONNECT tunnel, and TLS inside it
// verified against the registry (its test CA), not the proxy.
TEST_F(RealRegistryTest, TlsRegistryThroughProxyTunnel) {
  testing::BuiltImage built;
  auto registry = registryWith({.tls = true}, "test/tunnelled", "tunnelled", built);
  ASSERT_NE(nullptr, registry);
  auto proxy = startProxy();
  ASSERT_NE(nullptr, proxy);

  std::vector<std::string> plainFound;
  RegistryOptions options;
  options.retry.maxAttempts = 1;
  options.http.extraCaFile = registry->caFile().string();
  options.http.proxy = throughProxy(proxy->url());
  options.http.onPlainFound = [&](const std::string& origin, bool plain) {
    plainFound.push_back(origin + (plain ? " plain" : " tls"));
  };
  auto puller = RegistryPuller::create(runtime_, options, 2);
  ASSERT_TRUE(puller.isSome());
  pullAndVerify(**puller, *parseNormalized(registry->hostPort() + "/test/tunnelled:v1"), platform("amd64"), built,
                "tunnelled");
  EXPECT_TRUE(plainFound.empty());
  const std::string log = proxy->log();
  EXPECT_NE(std::string::npos, log.find("CONNECT " + registry->hostPort() + " HTTP/1.1")) << log;
  EXPECT_EQ(std::string::npos, log.find("GET http://" + registry->hostPort())) << log;

  // Without the CA the registry's certificate is refused, through the
  // tunnel as directly.
  options.http.extraCaFile.clear();
  auto untrusted = RegistryPuller::create(runtime_, options, 2);
  messages::Image image;
  *image.mutable_reference() = *parseNormalized(registry->hostPort() + "/test/tunnelled:v1");
  Future<messages::ResolvedImage> refused = (*untrusted)->resolve(image, platform("amd64"));
  AWAIT_EXPECT_ERROR(ErrorKind::IO, refused);
  EXPECT_NE(std::string::npos, refused.failure().message.find("certificate failed verification"))
      << refused.failure().message;
}

// no_proxy lists the registry (by address, by block): nothing of it goes to
// the proxy.
TEST_F(RealRegistryTest, NoProxyBypassesTheProxy) {
  testing::BuiltImage built;
  auto registry = registryWith({}, "test/direct", "direct", built);
  ASSERT_NE(nullptr, registry);
  auto proxy = startProxy();
  ASSERT_NE(nullptr, proxy);

  const std::vector<std::string> lists = {"127.0.0.1", "example.com, 127.0.0.0/8",
                                          "127.0.0.1:" + std::to_string(registry->port())};
  for (const auto& noProxy : lists) {
    RegistryOptions options;
    options.retry.maxAttempts = 1;
    options.http.proxy = throughProxy(proxy->url());
    options.http.proxy.noProxy = parseNoProxy(noProxy);
    auto puller = RegistryPuller::create(runtime_, options, 2);
    ASSERT_TRUE(puller.isSome());
    pullAndVerify(**puller, *parseNormalized(registry->hostPort() + "/test/direct:v1"), platform("amd64"), built,
                  "direct");
  }
  EXPECT_EQ(std::string::npos, proxy->log().find(registry->hostPort())) << proxy->log();
}

// A proxy behind Basic auth: its credentials from the proxy URL work;
// without them, or with a wrong password, Unauthorized naming the proxy and
// never the password.
TEST_F(RealRegistryTest, ProxyWithBasicAuth) {
  testing::BuiltImage built;
  auto registry = registryWith({}, "test/authproxy", "authproxy", built);
  ASSERT_NE(nullptr, registry);
  const auto user = std::make_pair(std::string("bob"), std::string("pr0xy-s3cret"));
  auto proxy = startProxy({.user = user});
  ASSERT_NE(nullptr, proxy);
  const auto ref = *parseNormalized(registry->hostPort() + "/test/authproxy:v1");

  RegistryOptions options;
  options.retry.maxAttempts = 1;
  options.insecure = {registry->hostPort()};  // plain, through a proxy
  options.http.proxy = throughProxy(proxy->url(user));
  auto puller = RegistryPuller::create(runtime_, options, 2);
  ASSERT_TRUE(puller.isSome());
  pullAndVerify(**puller, ref, platform("amd64"), built, "authproxy");

  messages::Image image;
  *image.mutable_reference() = ref;
  for (const auto& given : {proxy->url(), proxy->url(std::make_pair(user.first, std::string("wrong-s3cret")))}) {
    options.http.proxy = throughProxy(given);
    auto refused = RegistryPuller::create(runtime_, options, 2);
    ASSERT_TRUE(refused.isSome());
    Future<messages::ResolvedImage> resolved = (*refused)->resolve(image, platform("amd64"));
    AWAIT_EXPECT_ERROR(ErrorKind::Unauthorized, resolved);
    const std::string& message = resolved.failure().message;
    EXPECT_NE(std::string::npos, message.find("the proxy 'http://127.0.0.1:" + std::to_string(proxy->port()) + "'"))
        << message;
    EXPECT_EQ(std::string::npos, message.find("s3cret")) << message;
    EXPECT_EQ(std::string::npos, message.find("bob")) << message;
  }
}

// A proxy nobody listens on: Unavailable naming the proxy.
TEST_F(RealRegistryTest, ProxyDownIsUnavailable) {
  int port = 0;
  {
    auto gone = startProxy();
    ASSERT_NE(nullptr, gone);
    port = gone->port();
  }  // stopped: its port is free now
  RegistryOptions options;
  options.retry.maxAttempts = 1;
  options.http.connectTimeout = std::chrono::seconds(5);
  options.http.proxy = throughProxy("http://127.0.0.1:" + std::to_string(port));
  auto puller = RegistryPuller::create(runtime_, options, 2);
  ASSERT_TRUE(puller.isSome());
  messages::Image image;
  *image.mutable_reference() = *parseNormalized("127.0.0.1:5999/test/nothing:v1");
  Future<messages::ResolvedImage> resolved = (*puller)->resolve(image, platform("amd64"));
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, resolved);
  EXPECT_NE(std::string::npos, resolved.failure().message.find("Failed to connect to the proxy 'http://127.0.0.1:" +
                                                               std::to_string(port) + "' for"))
      << resolved.failure().message;
}

}  // namespace
}  // namespace prov::fetcher
