// The signature policy's evaluator (store/trust.hpp) on its own: real gpg
// keys and signatures (testkit/gpg_key.hpp) in a file:// lookaside written
// by the test, an HTTP lookaside that answers what the test says, and the
// acceptances it records.

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <optional>

#include "actors/actors.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/reference.hpp"
#include "store/trust.hpp"
#include "testkit/files.hpp"
#include "testkit/gpg_key.hpp"
#include "testkit/real_registry.hpp"
#include "tests/support/await.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using actors::ErrorKind;
using testing::GpgKey;

const std::string kDigest = "sha256:" + std::string(64, 'd');
const std::string kOther = "sha256:" + std::string(64, 'e');

class TrustTest : public testing::TemporaryDirectoryTest {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    alice_ = std::make_unique<GpgKey>("alice");
    mallory_ = std::make_unique<GpgKey>("mallory");
    ASSERT_FALSE(alice_->fingerprint().empty());
    ASSERT_FALSE(mallory_->fingerprint().empty());
    keyFile_ = sandbox() / "trusted.gpg";
    fs::copy_file(alice_->publicKeyFile(), keyFile_);
    testing::writeFile(sandbox() / "registries.d/local.yaml",
                       "docker:\n  r.io:\n    lookaside: file://" + (sandbox() / "sigs").string() + "\n");
    testing::writeFile(sandbox() / "policy.json",
                       R"({"default":[{"type":"reject"}],"transports":{"docker":{"r.io":[{"type":"signedBy",)"
                       R"("keyType":"GPGKeys","keyPath":")" +
                           keyFile_.string() +
                           R"("}]},"oci":{"":[{"type":"signedBy","keyType":"GPGKeys",)"
                           R"("keyPath":")" +
                           keyFile_.string() + R"("}]}}})");
  }

  std::shared_ptr<Trust> load(std::chrono::seconds recheckAfter = std::chrono::seconds(3600),
                              Trust::HttpGet http = nullptr, Trust::AttachmentsGet attachments = nullptr) {
    TrustOptions options{(sandbox() / "policy.json").string(), (sandbox() / "registries.d").string(),
                         (sandbox() / "records").string(), recheckAfter};
    auto trust = Trust::load(runtime_, options, std::move(http), std::move(attachments));
    EXPECT_TRUE(trust.isSome()) << trust.error().message;
    return trust.isSome() ? *trust : nullptr;
  }

  // A simple signing signature by `key` claiming `reference` at `digest`.
  std::string signature(const GpgKey& key, const std::string& reference, const std::string& digest) {
    testing::writeFile(sandbox() / "payload", R"({"critical":{"identity":{"docker-reference":")" + reference +
                                                  R"("},"image":{"docker-manifest-digest":")" + digest +
                                                  R"("},"type":"atomic container signature"},"optional":{}})");
    return key.sign(sandbox() / "payload");
  }

  fs::path signatureFile(int n, const std::string& digest = kDigest) const {
    // The lookaside path has no host: r.io/app is "app" under it.
    return sandbox() / "sigs" / ("app@sha256=" + digest.substr(7)) / ("signature-" + std::to_string(n));
  }

  static messages::Image image(const std::string& reference) {
    messages::Image image;
    image.set_type(messages::Image::DOCKER);
    *image.mutable_reference() = *fetcher::parseImageReference(reference);
    return image;
  }
  static std::string key(const std::string& reference) { return "docker://" + reference; }

  actors::Runtime runtime_;
  std::unique_ptr<GpgKey> alice_, mallory_;
  fs::path keyFile_;
};

TEST_F(TrustTest, AnAcceptanceIsRecordedAndStandsUntilRecheckAfter) {
  testing::writeFile(signatureFile(1), signature(*alice_, "r.io/app:v1", kDigest));
  auto trust = load();
  auto accepted = trust->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest);
  AWAIT_READY(accepted);
  EXPECT_EQ(std::vector<std::string>{"signedBy key " + alice_->fingerprint()}, accepted.get().by);
  EXPECT_EQ("transports.docker[\"r.io\"]", accepted.get().scope);
  EXPECT_EQ(trust->digest(), accepted.get().policyDigest);
  auto recorded = Trust::recorded((sandbox() / "records").string(), key("r.io/app:v1"), kDigest, trust->digest());
  ASSERT_TRUE(recorded);
  EXPECT_EQ(accepted.get().signatures, recorded->signatures);
  EXPECT_FALSE(Trust::recorded((sandbox() / "records").string(), key("r.io/app:v1"), kDigest, "sha256:other"));

  // The signature gone: a fresh Trust (a new command) still accepts from
  // the record, with no gpg run and no read...
  fs::remove_all(sandbox() / "sigs");
  AWAIT_READY(load()->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest));
  // ...until the acceptance is older than recheckAfter.
  AWAIT_EXPECT_ERROR(ErrorKind::Forbidden,
                     load(std::chrono::seconds(0))->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest));
}

TEST_F(TrustTest, AnotherKeyInTheKeyFileIsAnotherPolicy) {
  testing::writeFile(signatureFile(1), signature(*alice_, "r.io/app:v1", kDigest));
  AWAIT_READY(load()->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest));
  // The policy file is byte for byte the same; the key it names is not.
  fs::copy_file(mallory_->publicKeyFile(), keyFile_, fs::copy_options::overwrite_existing);
  auto refused = load()->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest);
  AWAIT_EXPECT_ERROR(ErrorKind::Forbidden, refused);
  EXPECT_NE(std::string::npos, refused.failure().message.find("signed by key " + alice_->fingerprint() +
                                                              ", which the policy does not trust"))
      << refused.failure().message;
}

TEST_F(TrustTest, OneGoodSignatureAmongBadOnesIsEnough) {
  testing::writeFile(signatureFile(1), signature(*mallory_, "r.io/app:v1", kDigest));
  testing::writeFile(signatureFile(2), signature(*alice_, "r.io/app:v1", kOther));
  testing::writeFile(signatureFile(3), "-----BEGIN PGP MESSAGE-----\n");
  const std::string good = signature(*alice_, "r.io/app:v1", kDigest);
  testing::writeFile(signatureFile(4), good);
  auto accepted = load()->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest);
  AWAIT_READY(accepted);
  EXPECT_EQ(std::vector<std::string>{fetcher::sha256Digest(good)}, accepted.get().signatures);

  fs::remove(signatureFile(4));
  // (Checked anew, not served from the acceptance just recorded.)
  auto refused = load(std::chrono::seconds(0))->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest);
  AWAIT_EXPECT_ERROR(ErrorKind::Forbidden, refused);
  const std::string message = refused.failure().message;
  EXPECT_NE(std::string::npos, message.find("none of its 3 signatures is accepted: signature-1: it was signed by key " +
                                            mallory_->fingerprint()))
      << message;
  EXPECT_NE(std::string::npos, message.find("; signature-2: it signs manifest " + kOther)) << message;
  EXPECT_NE(std::string::npos, message.find("; signature-3: the signature is not an OpenPGP message")) << message;
}

TEST_F(TrustTest, ALookasideThatCannotBeReadIsAnErrorNotARefusal) {
  // A FIFO where a signature would be: an error at once, not a wait.
  fs::create_directories(signatureFile(1).parent_path());
  ASSERT_EQ(0, ::mkfifo(signatureFile(1).c_str(), 0600));
  auto fifo = load()->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest);
  AWAIT_EXPECT_ERROR(ErrorKind::IO, fifo);
  EXPECT_NE(std::string::npos, fifo.failure().message.find("not a regular file")) << fifo.failure().message;

  // An HTTP lookaside that answers 500.
  testing::writeFile(sandbox() / "registries.d/local.yaml", "docker:\n  r.io:\n    lookaside: https://sigs.example/\n");
  std::vector<std::string> asked;
  auto trust = load(std::chrono::seconds(3600), [&asked](fetcher::HttpRequest request) {
    asked.push_back(request.url.toString());
    fetcher::HttpResponse response;
    response.status = 500;
    return actors::Future<fetcher::HttpResponse>(response);
  });
  auto broken = trust->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest);
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, broken);
  EXPECT_EQ(std::vector<std::string>{"https://sigs.example/app@sha256=" + kDigest.substr(7) + "/signature-1"}, asked);
}

TEST_F(TrustTest, SignatureRequirementsRefuseLocalSourcesAndHandBuiltReferencesAreChecked) {
  messages::Image layout;
  layout.set_type(messages::Image::OCI_LAYOUT);
  layout.set_path((sandbox() / "layout").string());
  auto refused = load()->check(layout, "oci:" + layout.path(), kDigest);
  AWAIT_EXPECT_ERROR(ErrorKind::Forbidden, refused);
  EXPECT_NE(std::string::npos, refused.failure().message.find("signatures are read only for registry images"))
      << refused.failure().message;

  messages::Image escaping = image("r.io/app:v1");
  escaping.mutable_reference()->set_repository("../../etc");
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, load()->check(escaping, "docker://r.io/../../etc:v1", kDigest));
}

// Sigstore signatures handed in as the registry would give them (the
// fetch itself is tested against the real registry in tests/cmd), keys and
// signatures made by openssl.
class SigstoreTrustTest : public TrustTest {
 protected:
  void SetUp() override {
    TrustTest::SetUp();
    if (HasFatalFailure()) return;
    testing::writeFile(sandbox() / "registries.d/local.yaml", "docker:\n  r.io:\n    use-sigstore-attachments: true\n");
    makeKey("p256", {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"});
    makeKey("rsa", {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"});
    makeKey("ed25519", {"-algorithm", "ED25519"});
    policy({"p256", "rsa", "ed25519"});
  }

  void makeKey(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), {"openssl", "genpkey"});
    args.insert(args.end(), {"-out", (sandbox() / (name + ".key")).string()});
    ASSERT_EQ(0, testing::runCommand(args).status) << name;
    ASSERT_EQ(0, testing::runCommand({"openssl", "pkey", "-in", (sandbox() / (name + ".key")).string(), "-pubout",
                                      "-out", (sandbox() / (name + ".pub")).string()})
                     .status);
  }

  void policy(const std::vector<std::string>& keys) {
    std::string paths;
    for (const auto& k : keys) paths += (paths.empty() ? "\"" : ",\"") + (sandbox() / (k + ".pub")).string() + "\"";
    testing::writeFile(sandbox() / "policy.json",
                       R"({"default":[{"type":"reject"}],"transports":{"docker":{"r.io":[{"type":"sigstoreSigned",)"
                       R"("keyPaths":[)" +
                           paths + R"(],"signedIdentity":{"type":"matchRepository"}}]}}})");
  }

  static std::string payload(const std::string& digest) {
    return R"({"critical":{"identity":{"docker-reference":"r.io/app"},"image":{"docker-manifest-digest":")" + digest +
           R"("},"type":"cosign container image signature"},"optional":null})";
  }

  // `text` signed by <key>.key: ECDSA and RSA over SHA-256, Ed25519 pure.
  std::string sign(const std::string& key, const std::string& text) {
    testing::writeFile(sandbox() / "payload", text);
    const std::string k = (sandbox() / (key + ".key")).string(), in = (sandbox() / "payload").string(),
                      out = (sandbox() / "payload.sig").string();
    auto signed_ = key == "ed25519" ? testing::runCommand({"openssl", "pkeyutl", "-sign", "-rawin", "-inkey", k, "-in",
                                                           in, "-out", out})
                                    : testing::runCommand({"openssl", "dgst", "-sha256", "-sign", k, "-out", out, in});
    EXPECT_EQ(0, signed_.status) << signed_.output;
    return testing::readFile(out);
  }

  fetcher::sigstore::Attachment attachment(const std::string& text, const std::string& signature) const {
    return {"sha256-x.sig layer 1", std::string(fetcher::sigstore::kPayloadMediaType), text, signature};
  }

  // What the registry holds now, or how reading it fails.
  std::vector<fetcher::sigstore::Attachment> attached_;
  std::optional<actors::Error> unreachable_;
  Trust::AttachmentsGet registry() {
    return [this](const messages::Image&,
                  const std::string&) -> actors::Future<std::vector<fetcher::sigstore::Attachment>> {
      if (unreachable_) return *unreachable_;
      return attached_;
    };
  }
};

TEST_F(SigstoreTrustTest, EachKeyTypeVerifiesAndTheClaimsAreChecked) {
  for (const std::string key : {"p256", "rsa", "ed25519"}) {
    attached_ = {attachment(payload(kDigest), sign(key, payload(kDigest)))};
    auto accepted = load(std::chrono::seconds(0), nullptr, registry())
                        ->check(image("r.io/app:v1"), this->key("r.io/app:v1"), kDigest);
    AWAIT_READY(accepted);
    EXPECT_EQ(0u, accepted.get().by.at(0).find("sigstoreSigned key sha256:")) << key;
  }
  // ECDSA as raw r||s (IEEE P1363), as some signers write it.
  const std::string der = sign("p256", payload(kDigest));
  testing::writeFile(sandbox() / "der.sig", der);
  auto raw = testing::runCommand({"python3", "-c",
                                  "import sys\n"
                                  "d = open(sys.argv[1], 'rb').read()\n"
                                  "i = 2\n"
                                  "out = b''\n"
                                  "for _ in range(2):\n"
                                  "    n = d[i + 1]\n"
                                  "    out += d[i + 2:i + 2 + n].lstrip(b'\\0').rjust(32, b'\\0')\n"
                                  "    i += 2 + n\n"
                                  "open(sys.argv[2], 'wb').write(out)\n",
                                  (sandbox() / "der.sig").string(), (sandbox() / "raw.sig").string()});
  ASSERT_EQ(0, raw.status) << raw.output;
  const std::string rawSignature = testing::readFile(sandbox() / "raw.sig");
  ASSERT_EQ(64u, rawSignature.size());
  attached_ = {attachment(payload(kDigest), rawSignature)};
  AWAIT_READY(
      load(std::chrono::seconds(0), nullptr, registry())->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest));

  auto refusal = [&](const std::string& why) {
    auto refused =
        load(std::chrono::seconds(0), nullptr, registry())->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest);
    AWAIT_EXPECT_ERROR(ErrorKind::Forbidden, refused);
    if (refused.isFailed()) {
      EXPECT_NE(std::string::npos, refused.failure().message.find(why)) << refused.failure().message;
    }
  };
  // Signed, but for another manifest.
  attached_ = {attachment(payload(kOther), sign("p256", payload(kOther)))};
  refusal("it signs manifest " + kOther + ", not this image's " + kDigest);
  // The payload swapped after signing.
  attached_ = {attachment(payload(kDigest), sign("p256", payload(kOther)))};
  refusal("its signature was not made by the policy's keys (or was altered)");
  // Another media type, and no signature at all.
  attached_ = {{"sha256-x.sig layer 1", "application/octet-stream", payload(kDigest), sign("p256", payload(kDigest))},
               attachment(payload(kDigest), "")};
  refusal(
      "none of its 2 signatures is accepted: sha256-x.sig layer 1: it is a application/octet-stream, not a "
      "signature; sha256-x.sig layer 1: it has no signature");
}

TEST_F(SigstoreTrustTest, AnUnreachableRegistryKeepsTheLastAcceptanceButNeverMakesOne) {
  attached_ = {attachment(payload(kDigest), sign("p256", payload(kDigest)))};
  auto trust = load(std::chrono::seconds(0), nullptr, registry());
  AWAIT_READY(trust->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest));
  // Past recheckAfter (0 s), in the same process: checked again. The
  // registry down: the acceptance stands.
  unreachable_ = actors::Error(ErrorKind::Unavailable, "registry down");
  AWAIT_READY(trust->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest));
  // An image never accepted is not let in by an outage.
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, trust->check(image("r.io/app:v1"), key("r.io/app:v1"), kOther));
  // The registry back, the signature gone: refused.
  unreachable_.reset();
  attached_.clear();
  AWAIT_EXPECT_ERROR(ErrorKind::Forbidden, trust->check(image("r.io/app:v1"), key("r.io/app:v1"), kDigest));
}

TEST_F(SigstoreTrustTest, OnlyPublicKeysOfTheTypesContainersImageTakesLoad) {
  makeKey("rsa1024", {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"});
  makeKey("k1", {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1"});
  ASSERT_EQ(0, testing::runCommand({"openssl", "req", "-x509", "-new", "-key", (sandbox() / "p256.key").string(),
                                    "-subj", "/CN=x", "-days", "1", "-out", (sandbox() / "cert.pub").string()})
                   .status);
  fs::copy_file(sandbox() / "p256.key", sandbox() / "private.pub");
  for (const auto& [name, says] :
       std::vector<std::pair<std::string, std::string>>{{"rsa1024", "an RSA key of 1024 bits"},
                                                        {"k1", "an ECDSA key on the curve 'secp256k1'"},
                                                        {"cert", "not a PEM public key"},
                                                        {"private", "not a PEM public key"}}) {
    policy({"p256", name});
    TrustOptions options{(sandbox() / "policy.json").string(), (sandbox() / "registries.d").string(), "", {}};
    auto loaded = Trust::load(runtime_, options, nullptr, registry());
    ASSERT_TRUE(loaded.isError()) << name;
    EXPECT_EQ(ErrorKind::InvalidArgument, loaded.error().kind);
    EXPECT_NE(std::string::npos, loaded.error().message.find(says)) << loaded.error().message;
  }
}

}  // namespace
}  // namespace prov::store
