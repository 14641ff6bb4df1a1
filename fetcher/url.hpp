#pragma once

// URLs the registry client talks to, and the rules about where credentials
// may go.
//
// An origin is (scheme, host, port) with the scheme's default port filled
// in. An Authorization header is sent only to the origin it was issued for:
// a redirect to another host, another port or another scheme loses it
// (CVE-2020-15157, curl CVE-2018-1000007 and CVE-2022-27776).

#include <string>
#include <string_view>

#include "fetcher/types.hpp"

namespace prov::fetcher {

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // lowercased; an IPv6 literal without its brackets
  int port = 0;        // the scheme's default when the URL gives none
  std::string target;  // path and query, at least "/"

  // "scheme://host[:port]target", the port only when not the default.
  std::string toString() const;
  // "scheme://host:port".
  std::string origin() const;
  // "host:port", an IPv6 host in brackets ("[::1]:5000").
  std::string hostPort() const;
  // The host as a URL or a Host header writes it: an IPv6 one in brackets.
  std::string hostForUrl() const;
};

// An absolute http or https URL; InvalidArgument naming it otherwise.
Try<Url> parseUrl(std::string_view text);

// The target of a redirect from `base` to a Location header's value, which
// may be relative.
Try<Url> resolveRedirect(const Url& base, std::string_view location);

bool sameOrigin(const Url& a, const Url& b);

// The registry URL for `registry` (host[:port]) and `target`: always https;
// whether it may end up plain http is the HTTP client's tlsMode
// (registryTlsMode in registry.hpp).
Try<Url> registryUrl(std::string_view registry, std::string_view target);

}  // namespace prov::fetcher
