// What a signature claims and where it is kept (fetcher/signature.hpp,
// fetcher/registries_d.hpp), and gpg verification against a keyring of a
// policy's keys only (fetcher/gpg.hpp), with keys and signatures made by
// the real gpg.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "fetcher/gpg.hpp"
#include "fetcher/reference.hpp"
#include "fetcher/registries_d.hpp"
#include "fetcher/signature.hpp"
#include "testkit/files.hpp"
#include "testkit/gpg_key.hpp"
#include "testkit/real_registry.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::fetcher {
namespace {

namespace fs = std::filesystem;
using signature::Format;
using signature::identityMatches;
using signature::parsePayload;
using Kind = policy::SignedIdentity::Kind;

const std::string kDigest = "sha256:" + std::string(64, 'a');

std::string payload(const std::string& critical, const std::string& optional = R"({"creator":"x","timestamp":1})") {
  return R"({"critical":)" + critical + R"(,"optional":)" + optional + "}";
}

std::string critical(const std::string& type = "atomic container signature", const std::string& ref = "r.io/a:1",
                     const std::string& digest = kDigest) {
  return R"({"type":")" + type + R"(","image":{"docker-manifest-digest":")" + digest +
         R"("},"identity":{"docker-reference":")" + ref + R"("}})";
}

std::string refusal(const std::string& text, Format format = Format::SimpleSigning) {
  auto parsed = parsePayload(text, format);
  EXPECT_TRUE(parsed.isError()) << text;
  if (parsed.isSome()) return "";
  EXPECT_EQ(ErrorKind::Corruption, parsed.error().kind);
  return parsed.error().message;
}

TEST(SignaturePayloadTest, ASimpleSigningPayloadGivesItsDigestAndReference) {
  auto parsed = parsePayload(payload(critical()), Format::SimpleSigning);
  ASSERT_TRUE(parsed.isSome()) << parsed.error().message;
  EXPECT_EQ(kDigest, parsed->manifestDigest);
  EXPECT_EQ("r.io/a:1", parsed->dockerReference);
  // Unknown keys in "optional" are someone else's business.
  EXPECT_TRUE(parsePayload(payload(critical(), R"({"future":[1,2]})"), Format::SimpleSigning).isSome());
  EXPECT_TRUE(parsePayload(payload(critical(), "{}"), Format::SimpleSigning).isSome());
}

TEST(SignaturePayloadTest, SigstoreTakesItsOwnTypeAndANullOptional) {
  const std::string sigstore = payload(critical("cosign container image signature"), "null");
  EXPECT_TRUE(parsePayload(sigstore, Format::Sigstore).isSome());
  EXPECT_NE(std::string::npos, refusal(payload(critical(), "null")).find("\"optional\" that is not a JSON object"));
  EXPECT_NE(std::string::npos, refusal(payload(critical()), Format::Sigstore).find("has type"));
}

TEST(SignaturePayloadTest, AnythingUnknownOrMissingInTheCriticalPartRefusesIt) {
  EXPECT_NE(std::string::npos, refusal(payload(critical("something else"))).find("has type \"something else\""));
  EXPECT_NE(std::string::npos,
            refusal(R"({"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":")" +
                    kDigest + R"("},"identity":{"docker-reference":"r.io/a:1"},"extra":1},"optional":{}})")
                .find("unknown key \"extra\" in \"critical\""));
  EXPECT_NE(std::string::npos,
            refusal(R"({"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":")" +
                    kDigest + R"(","more":1},"identity":{"docker-reference":"r.io/a:1"}},"optional":{}})")
                .find("unknown key \"more\" in \"critical.image\""));
  EXPECT_NE(std::string::npos,
            refusal(R"({"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":")" +
                    kDigest + R"("}},"optional":{}})")
                .find("no \"identity\""));
  EXPECT_NE(std::string::npos, refusal(R"({"critical":)" + critical() + "}").find("no \"optional\""));
  EXPECT_NE(std::string::npos, refusal(payload(critical(), R"({"timestamp":0.5})")).find("not an integer"));
  EXPECT_NE(std::string::npos, refusal(payload(critical(), R"({"creator":1})")).find("not a string"));
  EXPECT_NE(std::string::npos,
            refusal(payload(critical("atomic container signature", "r.io/a:1", "sha256:short"))).find("not a digest"));
  EXPECT_NE(
      std::string::npos,
      refusal(R"({"critical":)" + critical() + R"(,"critical":)" + critical() + R"(,"optional":{}})").find("twice"));
  EXPECT_NE(std::string::npos, refusal("not json").find("not valid JSON"));
  // A reader that stops at the NUL sees "identity"; one that does not, an unknown key.
  EXPECT_NE(std::string::npos,
            refusal(R"({"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":")" +
                    kDigest + R"("},"identity":{"docker-reference":"r.io/a:1"},"identity\u0000x":{}},"optional":{}})")
                .find("NUL"));
}

TEST(SignatureBlobTest, OpenPgpMessagesAndTheSimpleSigningFrameAreRead) {
  EXPECT_EQ(std::string("\xa3\x01xyz", 5), *signature::simpleSigningOf(std::string("\xa3\x01xyz", 5)));
  EXPECT_EQ(std::string("\x90\x0d", 2), *signature::simpleSigningOf(std::string("\x90\x0d", 2)));
  EXPECT_EQ("\xa3msg", *signature::simpleSigningOf(std::string("\0simple-signing\n\xa3msg", 20)));
  for (const std::string& bad : {std::string(), std::string("\0sigstore-json\n{}", 17),
                                 std::string("-----BEGIN PGP MESSAGE-----\n"), std::string("\0no newline", 11)}) {
    auto read = signature::simpleSigningOf(bad);
    EXPECT_TRUE(read.isError()) << bad;
    if (read.isError()) {
      EXPECT_EQ(ErrorKind::Corruption, read.error().kind);
    }
  }
}

messages::ImageReference refOf(const std::string& text) {
  auto r = parseNormalized(text);
  EXPECT_TRUE(r.isSome()) << text;
  return r.isSome() ? *r : messages::ImageReference();
}

policy::SignedIdentity identity(Kind kind) {
  policy::SignedIdentity id;
  id.kind = kind;
  return id;
}

TEST(SignedIdentityTest, MatchRepoDigestOrExactWantsTheTagPulledOrAnyClaimOnTheRepoForADigest) {
  const auto id = identity(Kind::MatchRepoDigestOrExact);
  EXPECT_TRUE(identityMatches(id, refOf("r.io/a:1"), "r.io/a:1"));
  EXPECT_TRUE(identityMatches(id, refOf("busybox"), "docker.io/library/busybox:latest"));
  EXPECT_TRUE(identityMatches(id, refOf("docker.io/library/busybox:latest"), "busybox:latest"));
  EXPECT_FALSE(identityMatches(id, refOf("r.io/a:2"), "r.io/a:1"));
  EXPECT_FALSE(identityMatches(id, refOf("r.io/a:1"), "r.io/b:1"));
  EXPECT_FALSE(identityMatches(id, refOf("r.io/a:1"), "r.io/a"));  // a claim must name a tag or digest
  EXPECT_TRUE(identityMatches(id, refOf("r.io/a@" + kDigest), "r.io/a:1"));
  EXPECT_FALSE(identityMatches(id, refOf("r.io/a@" + kDigest), "r.io/b:1"));
  EXPECT_FALSE(identityMatches(id, std::nullopt, "r.io/a:1"));  // a local source has no name to match
  EXPECT_FALSE(identityMatches(id, refOf("r.io/a:1"), "NOT A REFERENCE"));
}

TEST(SignedIdentityTest, EachOtherKindAsThePolicyManPageSays) {
  EXPECT_TRUE(identityMatches(identity(Kind::MatchExact), refOf("r.io/a:1"), "r.io/a:1"));
  EXPECT_FALSE(identityMatches(identity(Kind::MatchExact), refOf("r.io/a@" + kDigest), "r.io/a:1"));
  EXPECT_TRUE(identityMatches(identity(Kind::MatchRepository), refOf("r.io/a:2"), "r.io/a:1"));
  EXPECT_TRUE(identityMatches(identity(Kind::MatchRepository), refOf("r.io/a:2"), "r.io/a"));
  EXPECT_FALSE(identityMatches(identity(Kind::MatchRepository), refOf("r.io/a:2"), "r.io/b:1"));

  auto exact = identity(Kind::ExactReference);
  exact.reference = "r.io/signed:v1";
  EXPECT_TRUE(identityMatches(exact, refOf("other.io/x:9"), "r.io/signed:v1"));
  EXPECT_TRUE(identityMatches(exact, std::nullopt, "r.io/signed:v1"));  // the image's own name is not looked at
  EXPECT_FALSE(identityMatches(exact, refOf("r.io/signed:v1"), "r.io/signed:v2"));

  auto repository = identity(Kind::ExactRepository);
  repository.repository = "r.io/signed";
  EXPECT_TRUE(identityMatches(repository, std::nullopt, "r.io/signed:v7"));
  EXPECT_FALSE(identityMatches(repository, refOf("r.io/signed:v1"), "r.io/other:v1"));

  auto remap = identity(Kind::RemapIdentity);
  remap.prefix = "mirror.local:5000/team";
  remap.signedPrefix = "r.io/team";
  EXPECT_TRUE(identityMatches(remap, refOf("mirror.local:5000/team/app:1"), "r.io/team/app:1"));
  EXPECT_FALSE(identityMatches(remap, refOf("mirror.local:5000/team/app:1"), "mirror.local:5000/team/app:1"));
  EXPECT_FALSE(identityMatches(remap, refOf("mirror.local:5000/team/app:1"), "r.io/team/app:2"));
  // "team" is a prefix of "teammate" as a string, not as a path.
  EXPECT_FALSE(identityMatches(remap, refOf("mirror.local:5000/teammate/app:1"), "r.io/teammate/app:1"));
  EXPECT_TRUE(identityMatches(remap, refOf("mirror.local:5000/teammate/app:1"), "mirror.local:5000/teammate/app:1"));
}

class RegistriesDTest : public testing::TemporaryDirectoryTest {
 protected:
  void write(const std::string& name, const std::string& text) { testing::writeFile(sandbox() / name, text); }
  Try<RegistriesD> load() { return RegistriesD::load(sandbox().string()); }
};

TEST_F(RegistriesDTest, TheMostSpecificScopeWithALookasideWinsAcrossFiles) {
  write("a.yaml",
        "default-docker:\n  lookaside: file:///default\n"
        "docker:\n  r.io:5000/team:\n    lookaside: https://sigs.example.com/team\n");
  write("b.yaml",
        "docker:\n  r.io:5000/team/app:\n    sigstore: file:///old-name\n"
        "  r.io:5000/team/other:\n    lookaside-staging: file:///staging-only\n"
        "  '*.example.org':\n    lookaside: file:///wild\n");
  write("c.yml", "default-docker:\n  lookaside: file:///not-read\n");  // only *.yaml is read
  auto config = load();
  ASSERT_TRUE(config.isSome()) << config.error().message;
  EXPECT_EQ("file:///old-name", config->lookasideFor(refOf("r.io:5000/team/app:1")));
  EXPECT_EQ("https://sigs.example.com/team", config->lookasideFor(refOf("r.io:5000/team/other:1")));
  EXPECT_EQ("file:///wild", config->lookasideFor(refOf("reg.example.org/x:1")));
  EXPECT_EQ("file:///default", config->lookasideFor(refOf("busybox")));
  EXPECT_EQ("https://sigs.example.com/team/app@sha256=" + std::string(64, 'a') + "/signature-2",
            RegistriesD::signatureUrl("https://sigs.example.com/team/", refOf("r.io:5000/app:1"), kDigest, 2));
}

TEST_F(RegistriesDTest, AMissingDirectoryIsTheBuiltInDefaultAndConflictsAreErrors) {
  auto none = RegistriesD::load((sandbox() / "absent").string());
  ASSERT_TRUE(none.isSome());
  EXPECT_EQ("file:///var/lib/containers/sigstore", none->lookasideFor(refOf("busybox")));  // tests run as root

  write("a.yaml", "default-docker:\n  lookaside: file:///a\n");
  write("b.yaml", "default-docker:\n  lookaside: file:///b\n");
  auto twice = load();
  ASSERT_TRUE(twice.isError());
  EXPECT_NE(std::string::npos, twice.error().message.find("default-docker is also given in")) << twice.error().message;

  fs::remove(sandbox() / "b.yaml");
  write("b.yaml", "docker:\n  r.io: {lookaside: file:///x}\n");
  write("c.yaml", "docker:\n  r.io: {lookaside: file:///y}\n");
  auto scope = load();
  ASSERT_TRUE(scope.isError());
  EXPECT_NE(std::string::npos, scope.error().message.find("the scope \"r.io\" is also given in"));

  fs::remove(sandbox() / "c.yaml");
  write("d.yaml", "docker: [unclosed\n");
  auto bad = load();
  ASSERT_TRUE(bad.isError());
  EXPECT_EQ(ErrorKind::InvalidArgument, bad.error().kind);
  EXPECT_NE(std::string::npos, bad.error().message.find("d.yaml")) << bad.error().message;
}

class GpgKeyringTest : public testing::TemporaryDirectoryTest {
 protected:
  std::string sign(const testing::GpgKey& key, const std::string& text) {
    testing::writeFile(sandbox() / "payload", text);
    return key.sign(sandbox() / "payload");
  }
};

TEST_F(GpgKeyringTest, OnlyTheKeysGivenVerifyAndAlteredMessagesFail) {
  const testing::GpgKey alice("alice"), mallory("mallory");
  const std::string aliceFpr = alice.fingerprint();
  ASSERT_FALSE(aliceFpr.empty());
  auto ring = gpg::Keyring::create({testing::readFile(alice.publicKeyFile())}, "alice's key");
  ASSERT_TRUE(ring.isSome()) << ring.error().message;
  EXPECT_EQ(std::set<std::string>{aliceFpr}, (*ring)->fingerprints());

  const std::string text = payload(critical());
  const std::string good = sign(alice, text);
  auto verified = (*ring)->verify(good);
  ASSERT_TRUE(verified.isSome()) << verified.error().message;
  EXPECT_EQ(text, verified->payload);
  EXPECT_EQ(aliceFpr, verified->signer);

  auto other = (*ring)->verify(sign(mallory, text));
  ASSERT_TRUE(other.isError());
  EXPECT_EQ(ErrorKind::Forbidden, other.error().kind);
  EXPECT_NE(std::string::npos, other.error().message.find("which the policy does not trust")) << other.error().message;

  // gpg --sign compresses: flip a byte near the end (in the signature
  // packet or the compressed payload) and it no longer verifies.
  std::string altered = good;
  altered[altered.size() - 8] = static_cast<char>(altered[altered.size() - 8] ^ 0x40);
  EXPECT_TRUE((*ring)->verify(altered).isError());
  EXPECT_TRUE((*ring)->verify("\xa3garbage").isError());

  auto noKey = gpg::Keyring::create({"not a key"}, "the keys of default[0]");
  ASSERT_TRUE(noKey.isError());
  EXPECT_EQ(ErrorKind::InvalidArgument, noKey.error().kind);
  EXPECT_NE(std::string::npos, noKey.error().message.find("the keys of default[0]")) << noKey.error().message;
}

TEST_F(GpgKeyringTest, TheKeyringIsPrivateAndGoesWithTheObjectLeavingNoAgent) {
  const testing::GpgKey alice("alice");
  std::string home;
  {
    auto ring = gpg::Keyring::create({testing::readFile(alice.publicKeyFile())}, "alice's key");
    ASSERT_TRUE(ring.isSome()) << ring.error().message;
    EXPECT_TRUE((*ring)->verify(sign(alice, "x")).isSome());
    home = (*ring)->home();
    ASSERT_TRUE(fs::is_directory(home));
    EXPECT_EQ(fs::perms::owner_all, fs::status(home).permissions() & fs::perms::all);
  }
  EXPECT_FALSE(fs::exists(home));
  // No gpg-agent (or anything else) runs on it.
  for (const auto& process : fs::directory_iterator("/proc")) {
    std::ifstream in(process.path() / "cmdline");
    const std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(std::string::npos, cmdline.find(home)) << process.path() << ": " << cmdline;
  }
}

}  // namespace
}  // namespace prov::fetcher
