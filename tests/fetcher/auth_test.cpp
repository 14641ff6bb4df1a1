#include <gtest/gtest.h>

#include "fetcher/auth.hpp"
#include "testkit/files.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::fetcher {
namespace {

// Mesos DockerSpecTest.ParseDockerConfig.
TEST(DockerConfigTest, ParsesConfigJson) {
  // "dXNlcm5hbWU6cGFzc3dvcmQ=" is "username:password".
  auto auths = parseDockerConfig(R"json({
    "auths": {
      "https://index.docker.io/v1/": {"auth": "dXNlcm5hbWU6cGFzc3dvcmQ=", "email": "user@example.com"},
      "localhost:5000": {"auth": "dXNlcm5hbWU6cGFzc3dvcmQ=", "email": "user@example.com"}
    },
    "HttpHeaders": {"User-Agent": "Docker-Client/1.10.2 (linux)"}
  })json");
  ASSERT_TRUE(auths.isSome()) << auths.error().message;
  ASSERT_EQ(2u, auths->size());
  EXPECT_EQ("username", auths->at("docker.io").username());
  EXPECT_EQ("password", auths->at("docker.io").password());
  EXPECT_EQ("username", auths->at("localhost:5000").username());
}

// Mesos DockerSpecTest.ParseDockercfg.
TEST(DockerConfigTest, ParsesLegacyDockercfg) {
  auto auths = parseDockerConfig(R"({
    "quay.io": {"auth": "cXVheTpzZWNyZXQ=", "email": "a@b"},
    "https://index.docker.io/v1/": {"auth": "aHViOnB3", "email": "a@b"},
    "https://192.168.0.1:5050": {"username": "u", "password": "p", "identitytoken": "refresh"}
  })");
  ASSERT_TRUE(auths.isSome()) << auths.error().message;
  EXPECT_EQ("quay", auths->at("quay.io").username());
  EXPECT_EQ("secret", auths->at("quay.io").password());
  EXPECT_EQ("hub", auths->at("docker.io").username());
  EXPECT_EQ("pw", auths->at("docker.io").password());
  EXPECT_EQ("refresh", auths->at("192.168.0.1:5050").identity_token());
}

TEST(DockerConfigTest, BadAuthDoesNotLeakTheSecret) {
  auto auths = parseDockerConfig(R"({"auths": {"r.io": {"auth": "bm9jb2xvbmhlcmU="}}})");  // "nocolonhere"
  ASSERT_TRUE(auths.isError());
  EXPECT_EQ(std::string::npos, auths.error().message.find("nocolonhere"));
  EXPECT_EQ(std::string::npos, auths.error().message.find("bm9jb2xvbmhlcmU="));
  EXPECT_TRUE(parseDockerConfig("not json").isError());
  EXPECT_TRUE(parseDockerConfig(R"({"auths": []})").isError());
}

class DockerConfigFileTest : public prov::testing::TemporaryDirectoryTest {};

TEST_F(DockerConfigFileTest, FileOrInlineJson) {
  const std::string file = (sandbox() / "config.json").string();
  prov::testing::writeFile(file, R"({"auths": {"r.io:5000": {"auth": "dTpw"}}})");
  auto fromFile = loadDockerConfig(file);
  ASSERT_TRUE(fromFile.isSome()) << fromFile.error().message;
  EXPECT_EQ("u", fromFile->at("r.io:5000").username());
  auto inline_ = loadDockerConfig(R"( {"auths": {"r.io": {"auth": "dTpw"}}})");
  ASSERT_TRUE(inline_.isSome());
  auto missing = loadDockerConfig((sandbox() / "nope.json").string());
  ASSERT_TRUE(missing.isError());
  EXPECT_EQ(ErrorKind::NotFound, missing.error().kind);
}

// Mesos DockerSpecTest.ParseAuthUrl.
TEST(DockerConfigTest, ParseAuthUrl) {
  for (const char* host : {"registry.example.com", "localhost:8000", "registry.com"}) {
    const std::string h = host;
    EXPECT_EQ(h, parseAuthUrl("https://" + h + "/v1/"));
    EXPECT_EQ(h, parseAuthUrl("http://" + h));
    EXPECT_EQ(h, parseAuthUrl(h));
    EXPECT_EQ(h, parseAuthUrl(h + "/v1/"));
  }
}

TEST(DockerConfigTest, FindsCredentialsByRegistryHost) {
  auto auths = parseDockerConfig(R"({"auths": {
    "https://index.docker.io/v1/": {"auth": "aHViOnB3"},
    "localhost:5000": {"auth": "bG9jYWw6cHc="}}})");
  ASSERT_TRUE(auths.isSome());
  EXPECT_EQ("hub", findCredentials(*auths, "docker.io")->username());
  EXPECT_EQ("hub", findCredentials(*auths, "registry-1.docker.io")->username());
  EXPECT_EQ("local", findCredentials(*auths, "localhost:5000")->username());
  EXPECT_FALSE(findCredentials(*auths, "localhost:5001"));
  EXPECT_FALSE(findCredentials(*auths, "evil.io"));
  messages::Credentials c;
  c.set_username("hub");
  c.set_password("pw");
  EXPECT_EQ("aHViOnB3", basicCredentials(c));
}

TEST(DockerConfigTest, CredentialHelpersAndStore) {
  auto helpers = parseCredentialHelpers(R"({"auths":{"r.io":{}},"credsStore":"pass",
      "credHelpers":{"https://index.docker.io/v1/":"desktop","127.0.0.1:5000":"ecr-login"}})");
  ASSERT_TRUE(helpers.isSome()) << helpers.error().message;
  EXPECT_EQ("desktop", helpers->forRegistry("docker.io"));
  EXPECT_EQ("desktop", helpers->forRegistry("registry-1.docker.io"));
  EXPECT_EQ("ecr-login", helpers->forRegistry("127.0.0.1:5000"));
  EXPECT_EQ("pass", helpers->forRegistry("r.io"));
  EXPECT_EQ("", parseCredentialHelpers(R"({"auths":{}})")->forRegistry("r.io"));
  // A name is part of a program's name: nothing that could be a path.
  for (const char* bad :
       {R"({"credsStore":"../../bin/sh"})", R"({"credsStore":".hidden"})", R"({"credHelpers":{"r.io":"a/b"}})",
        R"({"credHelpers":{"r.io":7}})", R"({"credsStore":["pass"]})"}) {
    auto refused = parseCredentialHelpers(bad);
    ASSERT_TRUE(refused.isError()) << bad;
    EXPECT_EQ(ErrorKind::InvalidArgument, refused.error().kind);
  }
  EXPECT_EQ("https://index.docker.io/v1/", helperServerUrl("docker.io"));
  EXPECT_EQ("127.0.0.1:5000", helperServerUrl("127.0.0.1:5000"));
}

// The answers of docker-credential-helpers' `get`, old and new.
TEST(DockerConfigTest, CredentialHelperAnswers) {
  auto found = parseHelperAnswer("pass", 0,
                                 R"({"ServerURL":"r.io","Username":"alice","Secret":"s3cret"})"
                                 "\n");
  ASSERT_TRUE(found.isSome());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ("alice", (*found)->username());
  EXPECT_EQ("s3cret", (*found)->password());
  auto token = parseHelperAnswer("pass", 0, R"({"ServerURL":"r.io","Username":"\u003ctoken\u003e","Secret":"rt"})");
  ASSERT_TRUE(token.isSome() && token->has_value());
  EXPECT_EQ("rt", (*token)->identity_token());
  EXPECT_EQ("", (*token)->username());
  // None: the new helpers' message, the old ones' empty answer.
  EXPECT_FALSE(parseHelperAnswer("pass", 1, "credentials not found in native keychain\n")->has_value());
  EXPECT_FALSE(parseHelperAnswer("pass", 0, R"({"ServerURL":"r.io","Username":"","Secret":""})")->has_value());
  auto failed = parseHelperAnswer("pass", 1, "exit status 2: gpg: decryption failed: No secret key\nmore\n");
  ASSERT_TRUE(failed.isError());
  EXPECT_EQ(ErrorKind::Unavailable, failed.error().kind);
  EXPECT_EQ(
      "The credential helper 'docker-credential-pass' failed (exit status 1): exit status 2: gpg: decryption "
      "failed: No secret key",
      failed.error().message);
  auto garbage = parseHelperAnswer("pass", 0, "not json s3cret");
  ASSERT_TRUE(garbage.isError());
  EXPECT_EQ(std::string::npos, garbage.error().message.find("s3cret"));
}

TEST(WwwAuthenticateTest, BearerChallenge) {
  auto c = parseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  ASSERT_TRUE(c.isSome()) << c.error().message;
  ASSERT_EQ(1u, c->size());
  EXPECT_EQ("bearer", (*c)[0].scheme);
  EXPECT_EQ("https://auth.docker.io/token", (*c)[0].params.at("realm"));
  EXPECT_EQ("registry.docker.io", (*c)[0].params.at("service"));
  EXPECT_EQ("repository:library/busybox:pull", (*c)[0].params.at("scope"));
}

TEST(WwwAuthenticateTest, SeveralChallengesTokensAndEscapes) {
  auto c = parseWwwAuthenticate(R"(Basic realm="Registry \"x\"", Bearer realm=https://a/t , error=insufficient_scope)");
  ASSERT_TRUE(c.isSome()) << c.error().message;
  ASSERT_EQ(2u, c->size());
  EXPECT_EQ("basic", (*c)[0].scheme);
  EXPECT_EQ("Registry \"x\"", (*c)[0].params.at("realm"));
  EXPECT_EQ("bearer", (*c)[1].scheme);
  EXPECT_EQ("https://a/t", (*c)[1].params.at("realm"));
  EXPECT_EQ("insufficient_scope", (*c)[1].params.at("error"));
}

TEST(WwwAuthenticateTest, MalformedHeaders) {
  EXPECT_TRUE(parseWwwAuthenticate("").isError());
  EXPECT_TRUE(parseWwwAuthenticate(R"(Bearer realm="unterminated)").isError());
  EXPECT_TRUE(parseWwwAuthenticate("Bearer realm=").isError());
  EXPECT_TRUE(parseWwwAuthenticate("Bearer \x01").isError());
  EXPECT_TRUE(parseWwwAuthenticate(std::string(9000, 'a')).isError());
}

}  // namespace
}  // namespace prov::fetcher

namespace prov::fetcher {
namespace {

// Found by fuzz_policy: padding past two '=' (or inside the text) made the
// decoded length negative.
TEST(Base64Test, PaddingIsAtMostTwoAndOnlyAtTheEnd) {
  EXPECT_EQ("key", *base64Decode("a2V5"));
  EXPECT_EQ("ke", *base64Decode("a2U="));
  EXPECT_EQ("k", *base64Decode("aw=="));
  EXPECT_EQ("", *base64Decode(""));
  for (const char* bad : {"a2V5====", "a===", "====", "a2=5", "a2V5a2V5a2V5===="}) {
    auto decoded = base64Decode(bad);
    EXPECT_TRUE(decoded.isError()) << bad;
    if (decoded.isError()) {
      EXPECT_EQ(ErrorKind::InvalidArgument, decoded.error().kind);
    }
  }
}

}  // namespace
}  // namespace prov::fetcher
