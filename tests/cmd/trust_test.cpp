// Image trust through the command (store/trust.hpp): --signature_policy
// and --registries_d, with keys made by the real gpg, images signed by
// skopeo copy --sign-by into a file:// lookaside (and one served over
// HTTP), pushed to the real docker-registry.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <signal.h>

#include "fetcher/digest.hpp"
#include "testkit/gpg_key.hpp"
#include "tests/cmd/cli_fixture.hpp"

namespace prov {
namespace {

namespace fs = std::filesystem;
using clitest::CliTest;
using testing::GpgKey;
using testing::TarEntry;

class TrustTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    if (HasFatalFailure()) return;
    alice_ = std::make_unique<GpgKey>("alice");
    mallory_ = std::make_unique<GpgKey>("mallory");
    ASSERT_FALSE(alice_->fingerprint().empty());
    ASSERT_FALSE(mallory_->fingerprint().empty());
    sigs_ = sandbox() / "sigs";
    regd_ = sandbox() / "registries.d";
    testing::writeFile(regd_ / "local.yaml",
                       "docker:\n  " + registry_->hostPort() + ":\n    lookaside: file://" + sigs_.string() + "\n");
  }

  // test/<repoTag>: busybox and a layer naming `content` (one content, one
  // manifest digest), signed by `key` when given. Its manifest digest.
  std::string push(const std::string& repoTag, const std::string& content, const GpgKey* key) {
    auto made = layouts_.find(content);
    if (made == layouts_.end()) {
      made = layouts_
                 .emplace(content,
                          layoutOf(content, {busyboxLayer(), {TarEntry::file("content", content + "\n", 0644)}}))
                 .first;
    }
    const std::string layout = made->second;
    std::vector<std::string> extra;
    if (key != nullptr) {
      ::setenv("GNUPGHOME", key->home().c_str(), 1);
      extra = {"--sign-by", key->fingerprint(), "--registries.d", regd_.string()};
    }
    auto pushed = registry_->push(layout, "test/" + repoTag, "v2s2", false, extra);
    ::unsetenv("GNUPGHOME");
    EXPECT_EQ(0, pushed.status) << pushed.output;
    auto digest = testing::runCommand({"skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                                       "docker://" + registry_->hostPort() + "/test/" + repoTag});
    EXPECT_EQ(0, digest.status) << digest.output;
    return digest.output.substr(0, digest.output.find('\n'));
  }

  std::string image(const std::string& repoTag) const { return registry_->hostPort() + "/test/" + repoTag; }

  // Where skopeo put signature 1 of test/<repo> at `digest`.
  fs::path signatureOf(const std::string& repo, const std::string& digest) const {
    return sigs_ / "test" / (repo + "@sha256=" + digest.substr(7)) / "signature-1";
  }

  // The command with `policy` (JSON) as its --signature_policy.
  Output withPolicy(const std::string& policy, std::vector<std::string> args) {
    testing::writeFile(sandbox() / "policy.json", policy);
    args.insert(args.begin(),
                {"--signature_policy=" + (sandbox() / "policy.json").string(), "--registries_d=" + regd_.string()});
    return run(args);
  }

  // A policy: `default`, and `scoped` for the registry (JSON requirements).
  std::string policy(const std::string& scoped, const std::string& fallback = R"([{"type":"reject"}])") const {
    return R"({"default":)" + fallback + R"(,"transports":{"docker":{")" + registry_->hostPort() + R"(":)" + scoped +
           "}}}";
  }
  std::string signedBy(const GpgKey& key, const std::string& identity = "") const {
    return R"([{"type":"signedBy","keyType":"GPGKeys","keyPath":")" + key.publicKeyFile() + "\"" +
           (identity.empty() ? "" : R"(,"signedIdentity":)" + identity) + "}]";
  }

  // The refusal of `repoTag`: exit 1, nothing on stdout, the image, the
  // scope and `why` named, and nothing stored.
  void expectRefused(const Output& result, const std::string& repoTag, const std::string& why) {
    EXPECT_EQ(1, result.status) << result.err;
    EXPECT_EQ("", result.out);
    EXPECT_NE(std::string::npos,
              result.err.find("error: The signature policy '" + (sandbox() / "policy.json").string() +
                              "' refuses 'docker://" + image(repoTag) + "' (transports.docker[\"" +
                              registry_->hostPort() + "\"]): "))
        << result.err;
    EXPECT_NE(std::string::npos, result.err.find(why)) << result.err;
  }

  // What `images --json` says of the only image stored.
  rapidjson::Document listed() {
    rapidjson::Document doc;
    auto images = run({"--json", "images"});
    EXPECT_EQ(0, images.status) << images.err;
    doc.Parse(images.out.c_str());
    return doc;
  }

  bool storeHoldsNoLayer() const {
    const fs::path layers = workDir_ / "store/docker/layers";
    return !fs::exists(layers) || fs::is_empty(layers);
  }

  std::unique_ptr<GpgKey> alice_, mallory_;
  std::map<std::string, std::string> layouts_;  // by content: built once, so one content is one digest
  fs::path sigs_, regd_;
};

TEST_F(TrustTest, AnImageSignedByAPolicyKeyIsPulledProvisionedAndShownAsVerified) {
  const std::string digest = push("app:v1", "app", alice_.get());
  ASSERT_TRUE(fs::exists(signatureOf("app", digest))) << "skopeo wrote no signature";
  const std::string trusted = policy(signedBy(*alice_));

  // The keyring the check makes (a temporary directory) is gone when the
  // command exits: with a policy it tears its provisioner down in full.
  const fs::path tmp = sandbox() / "tmp";
  fs::create_directories(tmp);
  const char* before = std::getenv("TMPDIR");
  const std::optional<std::string> saved = before ? std::optional<std::string>(before) : std::nullopt;
  ::setenv("TMPDIR", tmp.c_str(), 1);
  auto pulled = withPolicy(trusted, {"pull", image("app:v1")});
  saved ? ::setenv("TMPDIR", saved->c_str(), 1) : ::unsetenv("TMPDIR");
  ASSERT_EQ(0, pulled.status) << pulled.err;
  EXPECT_EQ("docker://" + image("app:v1") + " " + digest + "\n", pulled.out);
  EXPECT_TRUE(fs::is_empty(tmp)) << "a keyring's directory was left in " << tmp;
  auto doc = listed();
  ASSERT_TRUE(doc.IsArray() && doc.Size() == 1);
  const auto& verified = doc[0]["verified"];
  ASSERT_TRUE(verified.IsObject());
  EXPECT_EQ((sandbox() / "policy.json").string(), verified["policy"].GetString());
  EXPECT_EQ("transports.docker[\"" + registry_->hostPort() + "\"]", std::string(verified["scope"].GetString()));
  ASSERT_EQ(1u, verified["by"].Size());
  EXPECT_EQ("signedBy key " + alice_->fingerprint(), std::string(verified["by"][0].GetString()));
  EXPECT_EQ(fetcher::sha256Digest(testing::readFile(signatureOf("app", digest))),
            std::string(verified["signatures"][0].GetString()));

  auto provisioned = withPolicy(trusted, {"provision", "c1", image("app:v1")});
  ASSERT_EQ(0, provisioned.status) << provisioned.err;
  auto ran = testing::runCommand(
      {"chroot", provisioned.out.substr(0, provisioned.out.size() - 1), "/bin/busybox", "cat", "/content"});
  EXPECT_EQ("app\n", ran.output);
  // An acceptance is recorded per policy: the next command checks nothing again.
  EXPECT_EQ(1u, std::distance(fs::directory_iterator(workDir_ / "store/docker/trust"), fs::directory_iterator()));

  // An image pulled with no policy shows as never checked.
  push("plain:v1", "plain", nullptr);
  ASSERT_EQ(0, run({"pull", image("plain:v1")}).status);
  doc = listed();
  ASSERT_EQ(2u, doc.Size());
  for (const auto& entry : doc.GetArray()) {
    const bool isPlain = std::string(entry["image"]["key"].GetString()).find("plain") != std::string::npos;
    EXPECT_EQ(isPlain, entry["verified"].IsNull()) << entry["image"]["key"].GetString();
  }
}

TEST_F(TrustTest, RefusalsNameTheImageTheScopeAndWhyAndStoreNothing) {
  push("unsigned:v1", "unsigned", nullptr);
  push("mallory:v1", "mallory", mallory_.get());
  const std::string appDigest = push("app:v1", "app", alice_.get());
  const std::string otherDigest = push("other:v1", "other", nullptr);
  const std::string tamperedDigest = push("tampered:v1", "tampered", alice_.get());
  // A signature of another image, copied where this one's would be.
  testing::writeFile(signatureOf("other", otherDigest), testing::readFile(signatureOf("app", appDigest)));
  // One of the signed message's bytes altered.
  std::string altered = testing::readFile(signatureOf("tampered", tamperedDigest));
  altered[altered.size() / 2] = static_cast<char>(altered[altered.size() / 2] ^ 0x01);
  testing::writeFile(signatureOf("tampered", tamperedDigest), altered);

  const std::string trusted = policy(signedBy(*alice_));
  expectRefused(withPolicy(trusted, {"pull", image("unsigned:v1")}), "unsigned:v1",
                "it asks for signedBy and the image is not signed (no signature at 'file://" + sigs_.string() +
                    "/test/unsigned@sha256=");
  expectRefused(withPolicy(trusted, {"pull", image("mallory:v1")}), "mallory:v1",
                "signature-1: it was signed by key " + mallory_->fingerprint() + ", which the policy does not trust");
  expectRefused(withPolicy(trusted, {"provision", "c1", image("other:v1")}), "other:v1",
                "signature-1: it signs manifest " + appDigest + ", not this image's " + otherDigest);
  auto tampered = withPolicy(trusted, {"pull", image("tampered:v1")});
  expectRefused(tampered, "tampered:v1", "signature-1: ");
  // Where the flipped bit lands in gpg's compressed message decides which.
  EXPECT_TRUE(tampered.err.find("its signature does not match what it signs (altered)") != std::string::npos ||
              tampered.err.find("it holds 0 signatures, not one") != std::string::npos ||
              tampered.err.find("it is not a signed OpenPGP message") != std::string::npos)
      << tampered.err;
  EXPECT_EQ("", run({"images"}).out);
  EXPECT_TRUE(storeHoldsNoLayer()) << "a refused image's layers were fetched";
  EXPECT_EQ("", run({"containers"}).out);

  // A repository rejected, everything else accepted.
  const std::string rejectOne = R"({"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{")" +
                                image("unsigned") + R"(":[{"type":"reject"}]}}})";
  auto rejected = withPolicy(rejectOne, {"pull", image("unsigned:v1")});
  EXPECT_EQ(1, rejected.status);
  EXPECT_NE(std::string::npos,
            rejected.err.find("(transports.docker[\"" + image("unsigned") + "\"]): the scope says reject"))
      << rejected.err;
  EXPECT_TRUE(storeHoldsNoLayer());
  auto accepted = withPolicy(rejectOne, {"pull", image("mallory:v1")});
  ASSERT_EQ(0, accepted.status) << accepted.err;
  auto doc = listed();
  ASSERT_EQ(1u, doc.Size());
  EXPECT_EQ("default", std::string(doc[0]["verified"]["scope"].GetString()));
  EXPECT_EQ("insecureAcceptAnything", std::string(doc[0]["verified"]["by"][0].GetString()));
}

TEST_F(TrustTest, EachSignedIdentityKindJudgesTheReferenceSigned) {
  // One manifest under three names; the signature, made for test/app:v1,
  // sits where every test/app tag finds it, and is copied for test/mirror.
  const std::string digest = push("app:v1", "app", alice_.get());
  EXPECT_EQ(digest, push("app:v2", "app", nullptr));
  EXPECT_EQ(digest, push("mirror:v1", "app", nullptr));
  testing::writeFile(signatureOf("mirror", digest), testing::readFile(signatureOf("app", digest)));
  const std::string claimed = image("app:v1");

  struct Case {
    std::string identity;  // "": the default, matchRepoDigestOrExact
    std::string repoTag;   // pulled
    bool accepted;
  };
  const std::vector<Case> cases = {
      {"", "app:v1", true},
      {"", "app:v2", false},
      {"", "app@" + digest, true},  // by digest: any claim on the repository
      {"", "mirror:v1", false},
      {R"({"type":"matchExact"})", "app:v1", true},
      {R"({"type":"matchExact"})", "app@" + digest, false},
      {R"({"type":"matchRepository"})", "app:v2", true},
      {R"({"type":"matchRepository"})", "mirror:v1", false},
      {R"({"type":"exactReference","dockerReference":")" + claimed + "\"}", "mirror:v1", true},
      {R"({"type":"exactReference","dockerReference":")" + image("app:v2") + "\"}", "app:v1", false},
      {R"({"type":"exactRepository","dockerRepository":")" + image("app") + "\"}", "mirror:v1", true},
      {R"({"type":"exactRepository","dockerRepository":")" + image("other") + "\"}", "app:v1", false},
      {R"({"type":"remapIdentity","prefix":")" + image("mirror") + R"(","signedPrefix":")" + image("app") + "\"}",
       "mirror:v1", true},
      {R"({"type":"remapIdentity","prefix":")" + image("mirror") + R"(","signedPrefix":")" + image("app") + "\"}",
       "app:v2", false},
  };
  for (const auto& c : cases) {
    auto result = withPolicy(policy(signedBy(*alice_, c.identity)), {"pull", image(c.repoTag)});
    if (c.accepted) {
      EXPECT_EQ(0, result.status) << c.identity << " " << c.repoTag << ": " << result.err;
    } else {
      EXPECT_EQ(1, result.status) << c.identity << " " << c.repoTag;
      EXPECT_NE(std::string::npos, result.err.find("signature-1: it signs \"" + claimed + "\", which signedIdentity "))
          << c.identity << " " << c.repoTag << ": " << result.err;
    }
  }
}

TEST_F(TrustTest, AStoredImageIsCheckedAgainUnderTheCurrentPolicy) {
  // Pulled with no policy, as by a provisioner from before policies: no
  // acceptance recorded, and none shown.
  push("app:v1", "app", nullptr);
  ASSERT_EQ(0, run({"pull", image("app:v1")}).status);
  EXPECT_FALSE(fs::exists(workDir_ / "store/docker/trust"));
  EXPECT_TRUE(listed()[0]["verified"].IsNull());
  ASSERT_EQ(0,
            withPolicy(policy(R"([{"type":"insecureAcceptAnything"}])"), {"provision", "c2", image("app:v1")}).status);
  EXPECT_EQ("insecureAcceptAnything", std::string(listed()[0]["verified"]["by"][0].GetString()));
  ASSERT_EQ(0, run({"destroy", "c2"}).status);
  // The policy now wants alice's signature: the stored image is refused,
  // and stays stored.
  auto refused = withPolicy(policy(signedBy(*alice_)), {"provision", "c1", image("app:v1")});
  expectRefused(refused, "app:v1", "the image is not signed");
  EXPECT_EQ("", run({"containers"}).out);
  EXPECT_NE("", run({"images"}).out);
  // Signed now (the same manifest, pushed again with a signature).
  push("app:v1", "app", alice_.get());
  auto provisioned = withPolicy(policy(signedBy(*alice_)), {"provision", "c1", image("app:v1")});
  EXPECT_EQ(0, provisioned.status) << provisioned.err;
  // No policy at all: no check.
  EXPECT_EQ(0, run({"provision", "c2", image("app:v1")}).status);
}

TEST_F(TrustTest, ALookasideServedOverHttpIsRead) {
  push("app:v1", "app", alice_.get());
  push("unsigned:v1", "unsigned", nullptr);
  // python3's http.server on a free port of 127.0.0.1, serving the lookaside.
  const int port = testing::freePort();
  const pid_t server = ::fork();
  ASSERT_GE(server, 0);
  if (server == 0) {
    ::execlp("python3", "python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", sigs_.c_str(),
             std::to_string(port).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!testing::accepting(port) && std::chrono::steady_clock::now() < deadline) {
    ASSERT_EQ(0, ::waitpid(server, nullptr, WNOHANG)) << "the lookaside server exited";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(testing::accepting(port)) << "the lookaside server did not listen";
  testing::writeFile(regd_ / "local.yaml", "docker:\n  " + registry_->hostPort() + ":\n    lookaside: " + base + "\n");
  auto pulled = withPolicy(policy(signedBy(*alice_)), {"pull", image("app:v1")});
  EXPECT_EQ(0, pulled.status) << pulled.err;
  expectRefused(withPolicy(policy(signedBy(*alice_)), {"pull", image("unsigned:v1")}), "unsigned:v1",
                "the image is not signed (no signature at '" + base + "/test/unsigned@sha256=");
  ::kill(server, SIGTERM);
  ::waitpid(server, nullptr, 0);
}

// Debian's skopeo refuses to sign with sigstore ("Debian-local change:
// sigstore disabled"), so the test attaches the signature itself, as cosign
// lays it out: an OCI manifest tagged sha256-<hex>.sig in the image's
// repository, whose one layer is the payload, its signature (ECDSA P-256
// by openssl, over the payload's bytes) in the
// dev.cosignproject.cosign/signature annotation.
class SigstoreTest : public TrustTest {
 protected:
  void SetUp() override {
    TrustTest::SetUp();
    if (HasFatalFailure()) return;
    for (const std::string name : {"cosign", "other"}) {
      const std::string key = (sandbox() / (name + ".key")).string();
      ASSERT_EQ(0, testing::runCommand(
                       {"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key})
                       .status);
      ASSERT_EQ(0, testing::runCommand(
                       {"openssl", "pkey", "-in", key, "-pubout", "-out", (sandbox() / (name + ".pub")).string()})
                       .status);
    }
    testing::writeFile(regd_ / "local.yaml", "docker:\n  " + registry_->hostPort() + ":\n    lookaside: file://" +
                                                 sigs_.string() + "\n    use-sigstore-attachments: true\n");
  }

  // Signs a payload claiming `claimed` at `digest` with <key>.key and
  // attaches it to test/<repo> for `digest`.
  void attach(const std::string& repo, const std::string& digest, const std::string& claimed, const std::string& key) {
    const std::string payload = R"({"critical":{"identity":{"docker-reference":")" + claimed +
                                R"("},"image":{"docker-manifest-digest":")" + digest +
                                R"("},"type":"cosign container image signature"},"optional":null})";
    const fs::path layout = sandbox() / ("attachment-" + repo + "-" + key);
    fs::remove_all(layout);
    auto blob = [&](const std::string& bytes) {
      const std::string d = fetcher::sha256Digest(bytes);
      testing::writeFile(layout / "blobs/sha256" / d.substr(7), bytes);
      return R"("digest":")" + d + R"(","size":)" + std::to_string(bytes.size());
    };
    testing::writeFile(sandbox() / "payload", payload);
    auto signature = testing::runCommand({"sh", "-c",
                                          "openssl dgst -sha256 -sign '" + (sandbox() / (key + ".key")).string() +
                                              "' '" + (sandbox() / "payload").string() + "' | openssl base64 -A"});
    ASSERT_EQ(0, signature.status) << signature.output;
    const std::string layer = blob(payload);
    const std::string config = blob(
        R"({"architecture":"","config":{},"os":"","rootfs":{"type":"layers","diff_ids":[")" +
        fetcher::sha256Digest(payload) + R"("]}})");
    const std::string manifest = blob(
        R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":)"
        R"("application/vnd.oci.image.config.v1+json",)" +
        config + R"(},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json",)" + layer +
        R"(,"annotations":{"dev.cosignproject.cosign/signature":")" + signature.output + R"("}}]})");
    testing::writeFile(layout / "index.json",
                       R"({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",)" +
                           manifest + R"(,"annotations":{"org.opencontainers.image.ref.name":"sig"}}]})");
    testing::writeFile(layout / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    auto pushed = registry_->push("oci:" + layout.string() + ":sig",
                                  "test/" + repo + ":sha256-" + digest.substr(7) + ".sig", "", false,
                                  {"--preserve-digests"});
    ASSERT_EQ(0, pushed.status) << pushed.output;
  }

  std::string sigstorePolicy(const std::string& identity = R"({"type":"matchRepository"})") const {
    return policy(R"([{"type":"sigstoreSigned","keyPath":")" + (sandbox() / "cosign.pub").string() +
                  R"(","signedIdentity":)" + identity + "}]");
  }
};

TEST_F(SigstoreTest, AnAttachedSignatureByThePolicyKeyLetsTheImageIn) {
  const std::string digest = push("app:v1", "app", nullptr);
  attach("app", digest, image("app"), "cosign");  // cosign claims the repository alone
  auto pulled = withPolicy(sigstorePolicy(), {"pull", image("app:v1")});
  ASSERT_EQ(0, pulled.status) << pulled.err;
  auto doc = listed();
  ASSERT_EQ(1u, doc.Size());
  const std::string by = doc[0]["verified"]["by"][0].GetString();
  EXPECT_EQ(0u, by.find("sigstoreSigned key sha256:")) << by;
  EXPECT_EQ(0, withPolicy(sigstorePolicy(), {"provision", "c1", image("app:v1")}).status);
}

TEST_F(SigstoreTest, RefusalsSayWhichAttachmentFailedAndWhy) {
  push("unsigned:v1", "unsigned", nullptr);
  const std::string other = push("other:v1", "other", nullptr);
  attach("other", other, image("other"), "other");  // the wrong key
  const std::string moved = push("moved:v1", "moved", nullptr);
  attach("moved", moved, image("moved"), "cosign");
  const std::string wrong = push("wrong:v1", "wrong", nullptr);
  attach("wrong", wrong, image("wrong"), "cosign");

  expectRefused(withPolicy(sigstorePolicy(), {"pull", image("unsigned:v1")}), "unsigned:v1",
                "it asks for sigstoreSigned and the image has no sigstore signature (no sha256-");
  expectRefused(withPolicy(sigstorePolicy(), {"pull", image("other:v1")}), "other:v1",
                ".sig layer 1: its signature was not made by the policy's keys (or was altered)");
  // The default identity wants the tag pulled; cosign's claim has none.
  expectRefused(withPolicy(sigstorePolicy(R"({"type":"matchRepoDigestOrExact"})"), {"pull", image("moved:v1")}),
                "moved:v1", "it signs \"" + image("moved") + "\", which signedIdentity matchRepoDigestOrExact");
  // Without use-sigstore-attachments nothing is looked for.
  testing::writeFile(regd_ / "local.yaml",
                     "docker:\n  " + registry_->hostPort() + ":\n    lookaside: file://" + sigs_.string() + "\n");
  expectRefused(withPolicy(sigstorePolicy(), {"pull", image("wrong:v1")}), "wrong:v1",
                "registries.d does not set use-sigstore-attachments for it");
  EXPECT_TRUE(storeHoldsNoLayer());
  // A key that is not a public key stops the command at its start.
  testing::writeFile(sandbox() / "cosign.pub", "not a key\n");
  auto bad = withPolicy(sigstorePolicy(), {"images"});
  EXPECT_EQ(1, bad.status);
  EXPECT_NE(std::string::npos, bad.err.find("not a PEM public key")) << bad.err;
}

TEST_F(TrustTest, ABadPolicyStopsEveryCommandAtItsStart) {
  struct Case {
    std::string policy;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"{not json", "not valid JSON"},
      {R"({"default":[{"type":"bogus"}]})", "unknown requirement type \"bogus\""},
      {R"({"default":[]})", "lists no requirements"},
      {R"({"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/nonexistent/key.gpg"}]})",
       "Failed to read the key file '/nonexistent/key.gpg' that default[0]"},
  };
  for (const auto& c : cases) {
    auto result = withPolicy(c.policy, {"images"});
    EXPECT_EQ(1, result.status) << c.policy;
    EXPECT_EQ("", result.out);
    EXPECT_EQ(0u, result.err.find("error: Invalid --signature_policy: ")) << result.err;
    EXPECT_NE(std::string::npos, result.err.find(c.says)) << result.err;
  }
  testing::writeFile(regd_ / "broken.yaml", "docker: [unclosed\n");
  auto yaml = withPolicy(R"({"default":[{"type":"insecureAcceptAnything"}]})", {"images"});
  EXPECT_EQ(1, yaml.status);
  EXPECT_NE(std::string::npos, yaml.err.find("broken.yaml")) << yaml.err;
  auto alone = run({"--registries_d=" + regd_.string(), "images"});
  EXPECT_EQ(1, alone.status);
  EXPECT_NE(std::string::npos, alone.err.find("--registries_d: it is read only with --signature_policy")) << alone.err;
}

}  // namespace
}  // namespace prov
