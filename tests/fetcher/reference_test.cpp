#include <gtest/gtest.h>

#include "fetcher/digest.hpp"
#include "fetcher/reference.hpp"

namespace prov::fetcher {
namespace {

const std::string kDigest = "sha256:bc8813ea7b3603864987522f02a76101c17ad122e1c46d790efc0fca78ca7bfb";

messages::ImageReference parse(const std::string& text) {
  auto r = parseImageReference(text);
  EXPECT_TRUE(r.isSome()) << text << ": " << (r.isError() ? r.error().message : "");
  return r.isSome() ? *r : messages::ImageReference();
}

// Mesos DockerSpecTest.ParseImageReference.
TEST(ReferenceTest, MesosParseImageReference) {
  auto r = parse("library/busybox");
  EXPECT_EQ("", r.registry());
  EXPECT_EQ("library/busybox", r.repository());
  EXPECT_EQ("", r.tag());
  EXPECT_EQ("", r.digest());

  r = parse("busybox");
  EXPECT_EQ("busybox", r.repository());
  EXPECT_EQ("", r.registry());

  r = parse("library/busybox:tag");
  EXPECT_EQ("library/busybox", r.repository());
  EXPECT_EQ("tag", r.tag());

  r = parse("library/busybox@" + kDigest);
  EXPECT_EQ("library/busybox", r.repository());
  EXPECT_EQ(kDigest, r.digest());
  EXPECT_EQ("", r.tag());

  r = parse("registry.io/library/busybox");
  EXPECT_EQ("registry.io", r.registry());
  EXPECT_EQ("library/busybox", r.repository());

  r = parse("registry.io/library/busybox:tag");
  EXPECT_EQ("registry.io", r.registry());
  EXPECT_EQ("tag", r.tag());

  r = parse("registry.io:80/library/busybox:tag");
  EXPECT_EQ("registry.io:80", r.registry());
  EXPECT_EQ("library/busybox", r.repository());
  EXPECT_EQ("tag", r.tag());

  r = parse("registry.io:80/library/busybox@" + kDigest);
  EXPECT_EQ("registry.io:80", r.registry());
  EXPECT_EQ(kDigest, r.digest());

  r = parse("localhost/app");
  EXPECT_EQ("localhost", r.registry());
  EXPECT_EQ("app", r.repository());
}

// Mesos DockerSpecTest.GetRegistrySpec.
TEST(ReferenceTest, MesosGetRegistrySpec) {
  EXPECT_FALSE(*registryPort(""));
  EXPECT_EQ("", registryHost(""));

  EXPECT_TRUE(registryPort(":").isError());
  EXPECT_EQ("", registryHost(":"));

  EXPECT_TRUE(registryPort("invalid_host:x80").isError());
  EXPECT_EQ("invalid_host", registryHost("invalid_host:x80"));
  EXPECT_TRUE(registryPort("invalid_port:80:80").isError());
  EXPECT_EQ("invalid_port", registryHost("invalid_port:80:80"));

  EXPECT_FALSE(*registryPort("index.docker.io"));
  EXPECT_EQ(80, **registryPort("localhost:80"));
  EXPECT_EQ(443, **registryPort("registry-1.docker.io:443"));
  EXPECT_EQ(1234, **registryPort("127.0.0.1:1234"));
}

// IPv6 literal registries, as distribution/reference accepts them since v0.6.
TEST(ReferenceTest, IpV6LiteralRegistries) {
  auto r = parseImageReference("[::1]:5000/test/app:v1");
  ASSERT_TRUE(r.isSome()) << r.error().message;
  EXPECT_EQ("[::1]:5000", r->registry());
  EXPECT_EQ("test/app", r->repository());
  EXPECT_EQ("v1", r->tag());
  EXPECT_EQ("[::1]:5000/test/app:v1", toString(*r));
  EXPECT_EQ(5000, **registryPort("[::1]:5000"));
  EXPECT_EQ("[::1]", registryHost("[::1]:5000"));
  r = parseImageReference("[2001:db8::1]/app");
  ASSERT_TRUE(r.isSome()) << r.error().message;
  EXPECT_EQ("[2001:db8::1]", r->registry());
  EXPECT_FALSE(*registryPort("[2001:db8::1]"));
  EXPECT_EQ("[fd00::1]:443/a/b@" + std::string("sha256:") + std::string(64, 'a'),
            toString(*parseImageReference("[fd00::1]:443/a/b@sha256:" + std::string(64, 'a'))));
  for (const char* bad : {"[::1/app", "[not-an-ip]:5000/app", "[::1]x/app", "[::1]:/app", "[::1]:99999/app",
                          "[fe80::1%eth0]:5000/app", "[1.2.3.4]:5000/app"}) {
    EXPECT_TRUE(parseImageReference(bad).isError()) << bad;
  }
}

TEST(ReferenceTest, NormalisesAsDockerDoes) {
  EXPECT_EQ("docker.io/library/busybox:latest", toString(*parseNormalized("busybox")));
  EXPECT_EQ("docker.io/library/busybox:latest", toString(*parseNormalized("busybox:latest")));
  EXPECT_EQ("docker.io/library/busybox:latest", toString(*parseNormalized("docker.io/library/busybox")));
  EXPECT_EQ("docker.io/library/busybox:latest", toString(*parseNormalized("index.docker.io/busybox")));
  EXPECT_EQ("docker.io/user/app:1.0", toString(*parseNormalized("user/app:1.0")));
  EXPECT_EQ("r.io:5000/a/b/c@" + kDigest, toString(*parseNormalized("r.io:5000/a/b/c@" + kDigest)));
  EXPECT_EQ("r.io/a:t@" + kDigest, toString(*parseNormalized("r.io/a:t@" + kDigest)));
  EXPECT_EQ("localhost:5000/app:latest", toString(*parseNormalized("localhost:5000/app")));
}

TEST(ReferenceTest, InvalidReferencesNameTheProblem) {
  struct Case {
    std::string text;
    std::string mentions;
  };
  for (const auto& c : std::vector<Case>{
           {"", "empty"},
           {"Busybox", "lowercase"},
           {"busybox:", "tag"},
           {"busybox:-x", "tag"},
           {"busybox:" + std::string(129, 'a'), "tag"},
           {"busybox@sha256:abc", "64 hex"},
           {"busybox@md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported algorithm"},
           {"busybox@sha256:BC8813EA7B3603864987522F02A76101C17AD122E1C46D790EFC0FCA78CA7BFB", "0-9 and a-f"},
           {"a@b@c", "multiple '@'"},
           {"r.io:99999/app", "port"},
           {"r.io:/app", "port"},
           {"-bad.io/app", "registry"},
           {"app/", "component"},
           {"app//x", "component"},
           {"a..b", "component"},
           {"r.io/" + std::string(256, 'a'), "255"},
           {"../../etc", "not a valid host"},
           {"app/../etc", "component"},
       }) {
    auto r = parseImageReference(c.text);
    ASSERT_TRUE(r.isError()) << "accepted '" << c.text << "'";
    EXPECT_EQ(ErrorKind::InvalidArgument, r.error().kind);
    EXPECT_NE(std::string::npos, r.error().message.find(c.mentions)) << c.text << " -> " << r.error().message;
  }
}

TEST(DigestTest, ValidateHashAndVerify) {
  EXPECT_TRUE(validateDigest(kDigest).isSome());
  EXPECT_TRUE(validateDigest("sha512:" + std::string(128, 'a')).isSome());
  EXPECT_TRUE(validateDigest("sha256:../../../etc/passwd").isError());
  EXPECT_TRUE(validateDigest("sha256").isError());
  EXPECT_EQ("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", sha256Digest(""));
  auto hasher = Hasher::create("sha256");
  ASSERT_TRUE(hasher.isSome());
  hasher->update("hello ");
  hasher->update("world");
  EXPECT_EQ(sha256Digest("hello world"), hasher->finish());
  EXPECT_TRUE(verifyDigest("hello world", sha256Digest("hello world"), "blob").isSome());
  auto mismatch = verifyDigest("hello", sha256Digest("hello world"), "blob 'x'");
  ASSERT_TRUE(mismatch.isError());
  EXPECT_EQ(ErrorKind::DigestMismatch, mismatch.error().kind);
  EXPECT_NE(std::string::npos, mismatch.error().message.find("blob 'x'"));
  auto sha512 = Hasher::create("sha512");
  ASSERT_TRUE(sha512.isSome());
  sha512->update("abc");
  EXPECT_EQ(
      "sha512:"
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e"
      "2a9ac94fa54ca49f",
      sha512->finish());
  EXPECT_EQ(ErrorKind::Unsupported, Hasher::create("md5").error().kind);
}

}  // namespace
}  // namespace prov::fetcher
