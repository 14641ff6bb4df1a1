#include <map>

#include <gtest/gtest.h>

#include "fetcher/proxy.hpp"

namespace prov::fetcher {
namespace {

EnvLookup env(std::map<std::string, std::string> variables) {
  return [variables](const std::string& name) -> std::optional<std::string> {
    auto it = variables.find(name);
    return it == variables.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

ProxySettings noProxy(const std::string& value) {
  ProxySettings settings;
  settings.noProxy = parseNoProxy(value);
  return settings;
}

TEST(ProxyTest, ParsesHttpProxiesWithDefaultsAndCredentials) {
  auto plain = parseProxy("proxy.corp:3128", "https_proxy");
  ASSERT_TRUE(plain.isSome()) << plain.error().message;
  EXPECT_EQ("proxy.corp", plain->host);
  EXPECT_EQ(3128, plain->port);
  EXPECT_EQ("", plain->authorization);

  auto noPort = parseProxy("HTTP://Proxy.Corp/", "http_proxy");
  ASSERT_TRUE(noPort.isSome());
  EXPECT_EQ("proxy.corp", noPort->host);
  EXPECT_EQ(1080, noPort->port);  // curl's default
  EXPECT_EQ("http://proxy.corp:1080", noPort->shown());

  // Percent-decoded: "al ice" / "p@ss:w".
  auto withUser = parseProxy("http://al%20ice:p%40ss%3Aw@10.0.0.1:8080", "HTTPS_PROXY");
  ASSERT_TRUE(withUser.isSome()) << withUser.error().message;
  EXPECT_EQ("Basic YWwgaWNlOnBAc3M6dw==", withUser->authorization);  // base64("al ice:p@ss:w")
  EXPECT_EQ("http://10.0.0.1:8080", withUser->shown());

  auto v6 = parseProxy("http://[::1]:3128", "https_proxy");
  ASSERT_TRUE(v6.isSome());
  EXPECT_EQ("::1", v6->host);
  EXPECT_EQ("http://[::1]:3128", v6->shown());
}

TEST(ProxyTest, RefusesOtherSchemesNamingTheVariableNotTheCredentials) {
  for (const char* bad : {"https://user:s3cret@proxy:443", "socks5://user:s3cret@proxy:1080", "socks5h://proxy",
                          "http://user:s3cret@:8080", "http://user:s3cret@proxy:0"}) {
    auto proxy = parseProxy(bad, "https_proxy");
    ASSERT_TRUE(proxy.isError()) << bad;
    EXPECT_EQ(ErrorKind::InvalidArgument, proxy.error().kind);
    EXPECT_NE(std::string::npos, proxy.error().message.find("https_proxy")) << proxy.error().message;
    EXPECT_EQ(std::string::npos, proxy.error().message.find("s3cret")) << proxy.error().message;
  }
}

TEST(ProxyTest, EnvironmentLowerCaseWinsAndEmptyMeansNone) {
  auto settings = proxyFromEnvironment(env({{"https_proxy", "http://lower:1"},
                                            {"HTTPS_PROXY", "http://upper:2"},
                                            {"HTTP_PROXY", "upper-http:3"},
                                            {"NO_PROXY", " Example.COM , .internal,,10.0.0.0/8 "}}));
  ASSERT_TRUE(settings.isSome()) << settings.error().message;
  ASSERT_TRUE(settings->https.has_value());
  EXPECT_EQ("lower", settings->https->host);
  ASSERT_TRUE(settings->http.has_value());
  EXPECT_EQ("upper-http", settings->http->host);
  EXPECT_EQ((std::vector<std::string>{"example.com", ".internal", "10.0.0.0/8"}), settings->noProxy);

  auto none = proxyFromEnvironment(env({{"http_proxy", ""}, {"HTTP_PROXY", "http://upper:2"}}));
  ASSERT_TRUE(none.isSome());
  EXPECT_FALSE(none->http.has_value());
  EXPECT_FALSE(none->https.has_value());
  EXPECT_TRUE(none->noProxy.empty());

  auto bad = proxyFromEnvironment(env({{"HTTPS_PROXY", "socks5://u:topsecret@proxy"}}));
  ASSERT_TRUE(bad.isError());
  EXPECT_EQ(ErrorKind::InvalidArgument, bad.error().kind);
  EXPECT_NE(std::string::npos, bad.error().message.find("HTTPS_PROXY")) << bad.error().message;
  EXPECT_EQ(std::string::npos, bad.error().message.find("topsecret"));
}

TEST(ProxyTest, NoProxyNamesMatchThemselvesAndSubdomains) {
  const auto settings = noProxy("example.com, .corp.net, *.test.org");
  EXPECT_TRUE(bypassProxy(settings, "example.com", 443));
  EXPECT_TRUE(bypassProxy(settings, "Registry.Example.COM", 443));
  EXPECT_TRUE(bypassProxy(settings, "example.com.", 443));
  EXPECT_FALSE(bypassProxy(settings, "notexample.com", 443));
  EXPECT_FALSE(bypassProxy(settings, "example.com.evil", 443));
  EXPECT_TRUE(bypassProxy(settings, "corp.net", 80));  // curl: ".corp.net" covers corp.net too
  EXPECT_TRUE(bypassProxy(settings, "a.b.corp.net", 80));
  EXPECT_TRUE(bypassProxy(settings, "test.org", 80));
  EXPECT_TRUE(bypassProxy(settings, "x.test.org", 80));
  EXPECT_FALSE(bypassProxy(settings, "127.0.0.1", 80));
  EXPECT_FALSE(bypassProxy(ProxySettings{}, "localhost", 80));  // loopback is proxied unless listed
}

TEST(ProxyTest, NoProxyStarAddressesBlocksAndPorts) {
  EXPECT_TRUE(bypassProxy(noProxy("*"), "anything.example", 1));
  EXPECT_TRUE(bypassProxy(noProxy("foo, *"), "::1", 1));

  const auto addresses = noProxy("127.0.0.1, ::1, 10.0.0.0/8, fd00::/8");
  EXPECT_TRUE(bypassProxy(addresses, "127.0.0.1", 5000));
  EXPECT_FALSE(bypassProxy(addresses, "127.0.0.2", 5000));
  EXPECT_TRUE(bypassProxy(addresses, "::1", 5000));
  EXPECT_TRUE(bypassProxy(addresses, "[::1]", 5000));
  EXPECT_TRUE(bypassProxy(addresses, "10.200.3.4", 443));
  EXPECT_FALSE(bypassProxy(addresses, "11.0.0.1", 443));
  EXPECT_TRUE(bypassProxy(addresses, "fd12:3456::1", 443));
  EXPECT_FALSE(bypassProxy(addresses, "fe80::1", 443));
  EXPECT_FALSE(bypassProxy(addresses, "localhost", 443));  // nothing is resolved

  EXPECT_TRUE(bypassProxy(noProxy("127.0.0.0/8"), "127.1.2.3", 1));
  EXPECT_TRUE(bypassProxy(noProxy("[::1]"), "::1", 1));
  EXPECT_FALSE(bypassProxy(noProxy("10.0.0.0/33, 10.0.0.0/x"), "10.0.0.1", 1));

  const auto ports = noProxy("registry.local:5000, 127.0.0.1:8080, [::1]:9000");
  EXPECT_TRUE(bypassProxy(ports, "registry.local", 5000));
  EXPECT_FALSE(bypassProxy(ports, "registry.local", 443));
  EXPECT_TRUE(bypassProxy(ports, "127.0.0.1", 8080));
  EXPECT_FALSE(bypassProxy(ports, "127.0.0.1", 8081));
  EXPECT_TRUE(bypassProxy(ports, "[::1]", 9000));
  EXPECT_FALSE(bypassProxy(ports, "::1", 9001));
}

}  // namespace
}  // namespace prov::fetcher
