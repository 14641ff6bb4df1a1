#pragma once

// Which HTTP proxy a request goes through, as curl decides it (the
// variables https_proxy, http_proxy and no_proxy, lower case winning over
// upper case).
//
// - Only http:// proxies: an https URL is tunnelled with CONNECT, an http
//   URL is sent in absolute form. A value without a scheme means http://,
//   and without a port 1080 (curl's default). https:// and socks proxies
//   are refused (InvalidArgument naming the variable).
// - Credentials in the proxy URL (http://user:password@host:port,
//   percent-encoded) become a Proxy-Authorization: Basic header. They never
//   appear in a message: a proxy is shown as http://host:port.
// - Loopback is proxied like any other host unless no_proxy lists it
//   (curl's rule; Go's never-proxy-loopback is not followed).
// - no_proxy: comma-separated entries, trimmed, case-insensitive. "*"
//   means every host; a name matches itself and its subdomains ("."
//   or "*." in front means the same); an IP address matches that address,
//   a CIDR block ("10.0.0.0/8", "fd00::/8") the addresses in it; nothing
//   is resolved. An entry with ":port" matches that port only. IPv6 hosts
//   may be bracketed or not.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fetcher/types.hpp"

namespace prov::fetcher {

struct Proxy {
  std::string host;  // lowercased; an IPv6 address without brackets
  int port = 1080;
  // "Basic <base64 of user:password>", or empty; never shown.
  std::string authorization;

  // "http://host:port": what messages may show.
  std::string shown() const;
};

struct ProxySettings {
  std::optional<Proxy> http;         // for http URLs
  std::optional<Proxy> https;        // for https URLs (CONNECT)
  std::vector<std::string> noProxy;  // entries, trimmed and lowercased
};

// A proxy variable's value; `variable` names it in the error
// (InvalidArgument) when the value is not an http proxy URL.
Try<Proxy> parseProxy(std::string_view value, std::string_view variable);

// no_proxy's value as ProxySettings::noProxy holds it.
std::vector<std::string> parseNoProxy(std::string_view value);

// A variable's value, or nothing when it is unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// The settings the environment gives (`lookup`: the process's environment
// when empty). An empty value means no proxy. InvalidArgument naming the
// variable for a value that is not an http proxy URL.
Try<ProxySettings> proxyFromEnvironment(const EnvLookup& lookup = {});

// Whether a request to host:port goes direct by `settings.noProxy`.
bool bypassProxy(const ProxySettings& settings, const std::string& host, int port);

}  // namespace prov::fetcher
