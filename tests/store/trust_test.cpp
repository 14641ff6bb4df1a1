// The signature policy's evaluator (store/trust.hpp) on its own: real gpg
// keys and signatures (testkit/gpg_key.hpp) in a file:// lookaside written
// by the test, an HTTP lookaside that answers what the test says, and the
// acceptances it records.

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "actors/actors.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/reference.hpp"
#include "store/trust.hpp"
#include "testkit/files.hpp"
#include "testkit/gpg_key.hpp"
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
                              Trust::HttpGet http = nullptr) {
    TrustOptions options{(sandbox() / "policy.json").string(), (sandbox() / "registries.d").string(),
                         (sandbox() / "records").string(), recheckAfter};
    auto trust = Trust::load(runtime_, options, std::move(http));
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

}  // namespace
}  // namespace prov::store
