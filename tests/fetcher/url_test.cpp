#include <gtest/gtest.h>

#include "fetcher/url.hpp"

namespace prov::fetcher {
namespace {

Url url(const std::string& text) {
  auto u = parseUrl(text);
  EXPECT_TRUE(u.isSome()) << text << ": " << (u.isError() ? u.error().message : "");
  return u.isSome() ? *u : Url{};
}

TEST(UrlTest, ParsesWithDefaultPorts) {
  Url u = url("https://Registry.Example.com/v2/library/busybox/manifests/latest?x=1");
  EXPECT_EQ("https", u.scheme);
  EXPECT_EQ("registry.example.com", u.host);
  EXPECT_EQ(443, u.port);
  EXPECT_EQ("/v2/library/busybox/manifests/latest?x=1", u.target);
  EXPECT_EQ("https://registry.example.com/v2/library/busybox/manifests/latest?x=1", u.toString());
  EXPECT_EQ("https://registry.example.com:443", u.origin());
  Url plain = url("http://127.0.0.1:5000");
  EXPECT_EQ(5000, plain.port);
  EXPECT_EQ("/", plain.target);
  EXPECT_EQ("http://127.0.0.1:5000/", plain.toString());
}

TEST(UrlTest, RejectsWhatItCannotUse) {
  for (const char* bad : {"ftp://x/", "/relative", "https://", "https://user:pw@host/", "not a url", "http://h:0/"}) {
    auto u = parseUrl(bad);
    ASSERT_TRUE(u.isError()) << bad;
    EXPECT_EQ(ErrorKind::InvalidArgument, u.error().kind);
  }
}

TEST(UrlTest, RedirectsResolveAndOriginsCompare) {
  Url base = url("https://registry.io/v2/app/blobs/sha256:abc");
  Url sameHost = *resolveRedirect(base, "/blobs/elsewhere?sig=1");
  EXPECT_EQ("https://registry.io/blobs/elsewhere?sig=1", sameHost.toString());
  EXPECT_TRUE(sameOrigin(base, sameHost));
  Url s3 = *resolveRedirect(base, "https://bucket.s3.amazonaws.com/blob?X-Amz-Signature=s");
  EXPECT_FALSE(sameOrigin(base, s3));
  // Same host, another port or scheme: another origin (curl CVE-2022-27776).
  EXPECT_FALSE(sameOrigin(base, *resolveRedirect(base, "https://registry.io:8443/x")));
  EXPECT_FALSE(sameOrigin(base, *resolveRedirect(base, "http://registry.io/x")));
  EXPECT_TRUE(sameOrigin(base, *resolveRedirect(base, "https://REGISTRY.io:443/x")));
  EXPECT_TRUE(resolveRedirect(base, "ftp://x/").isError());
}

// Every registry URL says https: the HTTP client's TLS mode decides whether
// a loopback or insecure registry ends up on plain http.
TEST(UrlTest, RegistryUrlsAreHttps) {
  EXPECT_EQ("https://127.0.0.1:5000/v2/", registryUrl("127.0.0.1:5000", "/v2/")->toString());
  EXPECT_EQ("https://registry.io/v2/", registryUrl("registry.io", "/v2/")->toString());
  EXPECT_EQ("https://registry.io:5000/v2/", registryUrl("registry.io:5000", "/v2/")->toString());
  EXPECT_EQ("https://localhost:80/v2/", registryUrl("localhost:80", "/v2/")->toString());
  EXPECT_TRUE(registryUrl("registry.io:x", "/v2/").isError());
}

}  // namespace
}  // namespace prov::fetcher
