// Signature policies (fetcher/policy.hpp): what a containers-policy.json
// file says, read strictly, and which of its requirement lists applies to
// an image.

#include <gtest/gtest.h>

#include "fetcher/policy.hpp"
#include "fetcher/reference.hpp"

namespace prov::fetcher::policy {
namespace {

using Type = Requirement::Type;

Policy parsed(const std::string& json) {
  auto policy = Policy::parse(json, "p.json");
  EXPECT_TRUE(policy.isSome()) << (policy.isError() ? policy.error().message : "");
  return policy.isSome() ? *policy : Policy();
}

std::string refused(const std::string& json) {
  auto policy = Policy::parse(json, "p.json");
  EXPECT_TRUE(policy.isError()) << json;
  if (policy.isSome()) return "";
  EXPECT_EQ(actors::ErrorKind::InvalidArgument, policy.error().kind);
  EXPECT_NE(std::string::npos, policy.error().message.find("Invalid signature policy in 'p.json': "))
      << policy.error().message;
  return policy.error().message;
}

messages::ImageReference refOf(const std::string& text) {
  auto r = parseNormalized(text);
  EXPECT_TRUE(r.isSome()) << text;
  return r.isSome() ? *r : messages::ImageReference();
}

TEST(PolicyTest, DockerScopesGoFromTheReferenceToTheWildcardsOfItsHost) {
  EXPECT_EQ((std::vector<std::string>{"reg.example.com:5000/ns/app:v1", "reg.example.com:5000/ns/app",
                                      "reg.example.com:5000/ns", "reg.example.com:5000", "*.example.com", "*.com"}),
            dockerScopes(refOf("reg.example.com:5000/ns/app:v1")));
  EXPECT_EQ((std::vector<std::string>{"docker.io/library/busybox:latest", "docker.io/library/busybox",
                                      "docker.io/library", "docker.io", "*.io"}),
            dockerScopes(refOf("busybox")));
  EXPECT_EQ((std::vector<std::string>{"localhost:5000/foo@sha256:" + std::string(64, 'a'), "localhost:5000/foo",
                                      "localhost:5000"}),
            dockerScopes(refOf("localhost:5000/foo@sha256:" + std::string(64, 'a'))));
}

TEST(PolicyTest, TheMostSpecificScopeAppliesAndListsAreNeverMerged) {
  const Policy policy = parsed(R"({
    "default": [{"type": "reject"}],
    "transports": {
      "docker": {
        "": [{"type": "insecureAcceptAnything"}],
        "reg.example.com:5000": [{"type": "reject"}],
        "reg.example.com:5000/ns/app": [{"type": "insecureAcceptAnything"}, {"type": "insecureAcceptAnything"}],
        "reg.example.com:5000/ns/app:v2": [{"type": "reject"}],
        "*.example.com": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/keys/a.gpg"}]
      },
      "oci": {"/srv/images": [{"type": "reject"}]},
      "docker-archive": {"": [{"type": "insecureAcceptAnything"}]},
      "an-unknown-transport": {"": [{"type": "reject"}]}
    }})");
  auto applied = policy.forDocker(refOf("reg.example.com:5000/ns/app:v1"));
  EXPECT_EQ("reg.example.com:5000/ns/app", applied.scope);
  EXPECT_EQ(2u, applied.requirements->size());
  EXPECT_EQ("transports.docker[\"reg.example.com:5000/ns/app\"]", applied.describe());
  EXPECT_EQ("reg.example.com:5000/ns/app:v2", policy.forDocker(refOf("reg.example.com:5000/ns/app:v2")).scope);
  EXPECT_EQ("reg.example.com:5000", policy.forDocker(refOf("reg.example.com:5000/other:v1")).scope);
  // The port goes for the wildcards only; the bare host is never a scope.
  auto wild = policy.forDocker(refOf("mirror.example.com/x:1"));
  EXPECT_EQ("*.example.com", wild.scope);
  EXPECT_EQ(Type::SignedBy, wild.requirements->front().type);
  EXPECT_EQ(std::vector<std::string>{"/keys/a.gpg"}, wild.requirements->front().keyPaths);
  EXPECT_EQ("", policy.forDocker(refOf("busybox")).scope);
  EXPECT_EQ("/srv/images", policy.forOci("/srv/images/app").scope);
  EXPECT_EQ("/srv/images", policy.forOci("/srv/images").scope);
  EXPECT_EQ("default", policy.forOci("/elsewhere").describe());
  EXPECT_EQ(Type::InsecureAcceptAnything, policy.forDockerArchive().requirements->front().type);
  EXPECT_EQ(Type::Reject, parsed(R"({"default":[{"type":"reject"}]})").forDockerArchive().requirements->front().type);
}

TEST(PolicyTest, KeysAndSignedIdentitiesAreReadAsWritten) {
  const Policy policy = parsed(R"({"default": [
    {"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/k/1", "/k/2"],
     "signedIdentity": {"type": "remapIdentity", "prefix": "mirror.local/ns", "signedPrefix": "docker.io/library"}},
    {"type": "signedBy", "keyType": "GPGKeys", "keyData": "a2V5",
     "signedIdentity": {"type": "exactReference", "dockerReference": "busybox:1.36"}},
    {"type": "sigstoreSigned", "keyData": "cGVt", "signedIdentity": {"type": "exactRepository", "dockerRepository": "quay.io/x/y"}},
    {"type": "sigstoreSigned", "keyPath": "/k/cosign.pub", "signedIdentity": {"type": "matchRepository"}}]})");
  const auto& list = *policy.forDockerArchive().requirements;
  ASSERT_EQ(4u, list.size());
  EXPECT_EQ((std::vector<std::string>{"/k/1", "/k/2"}), list[0].keyPaths);
  EXPECT_EQ(SignedIdentity::Kind::RemapIdentity, list[0].identity.kind);
  EXPECT_EQ("mirror.local/ns", list[0].identity.prefix);
  EXPECT_EQ("docker.io/library", list[0].identity.signedPrefix);
  EXPECT_EQ(std::vector<std::string>{"key"}, list[1].keyData);
  EXPECT_EQ("docker.io/library/busybox:1.36", list[1].identity.reference);
  EXPECT_EQ(Type::SigstoreSigned, list[2].type);
  EXPECT_EQ("quay.io/x/y", list[2].identity.repository);
  EXPECT_EQ(SignedIdentity::Kind::MatchRepository, list[3].identity.kind);
  EXPECT_EQ(SignedIdentity::Kind::MatchRepoDigestOrExact,
            parsed(R"({"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}]})")
                .forDockerArchive()
                .requirements->front()
                .identity.kind);
}

TEST(PolicyTest, WhatAnotherToolWouldReadDifferentlyIsRefusedAndNamed) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "not valid JSON"},
      {"[]", "the policy is not a JSON object"},
      {R"({"transports":{}})", "there is no \"default\""},
      {R"({"default":[]})", "default lists no requirements"},
      {R"({"default":[{"type":"reject"}],"default":[{"type":"reject"}]})", "\"default\" appears twice"},
      // A C-string reader would take "docker\u0000" for a second "docker" and let it win.
      {R"({"default":[{"type":"reject"}],"transports":{"docker":{"r.io":[{"type":"reject"}]},)"
       R"("docker\u0000":{"r.io":[{"type":"insecureAcceptAnything"}]}}})",
       "a key holds a NUL character"},
      {R"({"default":[{"type":"reject"}],"extra":1})", "unknown key \"extra\" in the policy"},
      {R"({"default":[{"type":"bogus"}]})", "default[0]: unknown requirement type \"bogus\""},
      {R"({"default":[{}]})", "default[0]"},
      {R"({"default":[{"type":"reject","keyPath":"/k"}]})", "unknown key \"keyPath\" in default[0]"},
      {R"({"default":[{"type":"signedBy","keyPath":"/k"}]})", "keyType"},
      {R"({"default":[{"type":"signedBy","keyType":"X509Certificates","keyPath":"/k"}]})",
       "keyType \"X509Certificates\" is not supported"},
      {R"({"default":[{"type":"signedBy","keyType":"GPGKeys"}]})",
       "exactly one of keyPath, keyPaths, keyData must be given, none is"},
      {R"({"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","keyData":"a2V5"}]})", "2 are"},
      {R"({"default":[{"type":"signedBy","keyType":"GPGKeys","keyPaths":[]}]})", "keyPaths is empty"},
      {R"({"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"relative.gpg"}]})", "not an absolute path"},
      {R"({"default":[{"type":"signedBy","keyType":"GPGKeys","keyData":"%%%"}]})", "keyData is not base64"},
      {R"({"default":[{"type":"sigstoreSigned","keyPath":"/k","rekorPublicKeyPath":"/r"}]})",
       "\"rekorPublicKeyPath\" is not supported"},
      {R"({"default":[{"type":"sigstoreSigned","fulcio":{}}]})", "\"fulcio\" is not supported"},
      {R"({"default":[{"type":"signedBaseLayer"}]})", "signedBaseLayer is not supported"},
      {R"({"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","signedIdentity":{"type":"nope"}}]})",
       "unknown signedIdentity type \"nope\""},
      {R"({"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k",
           "signedIdentity":{"type":"exactReference","dockerReference":"busybox"}}]})",
       "not a reference with a tag or digest"},
      {R"({"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k",
           "signedIdentity":{"type":"remapIdentity","prefix":"docker.io/","signedPrefix":"x.io"}}]})",
       "prefix \"docker.io/\" is neither"},
      {R"({"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k",
           "signedIdentity":{"type":"matchExact","dockerReference":"a:b"}}]})",
       "unknown key \"dockerReference\""},
      {R"({"default":[{"type":"reject"}],"transports":{"oci":{"relative/dir":[{"type":"reject"}]}}})",
       "an oci scope is a clean absolute path"},
      {R"({"default":[{"type":"reject"}],"transports":{"docker-archive":{"/a.tar":[{"type":"reject"}]}}})",
       "docker-archive takes only the \"\" scope"},
      {R"({"default":[{"type":"reject"}],"transports":{"docker":{"x.io":[]}}})",
       "transports.docker[\"x.io\"] lists no requirements"},
  };
  for (const auto& [json, expected] : cases) {
    const std::string message = refused(json);
    EXPECT_NE(std::string::npos, message.find(expected)) << json << "\n  -> " << message;
  }
}

TEST(PolicyTest, AFileThatIsNotThereIsAnErrorNamingIt) {
  auto policy = Policy::load("/nonexistent/policy.json");
  ASSERT_TRUE(policy.isError());
  EXPECT_NE(std::string::npos, policy.error().message.find("'/nonexistent/policy.json'")) << policy.error().message;
}

TEST(PolicyTest, ItsDigestIsTheFilesBytes) {
  const std::string json = R"({"default":[{"type":"insecureAcceptAnything"}]})";
  EXPECT_EQ(parsed(json).digest(), parsed(json).digest());
  EXPECT_NE(parsed(json).digest(), parsed(json + "\n").digest());
}

}  // namespace
}  // namespace prov::fetcher::policy
