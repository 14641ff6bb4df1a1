#include "fetcher/url.hpp"

#include <algorithm>
#include <cctype>

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include "fetcher/reference.hpp"

namespace prov::fetcher {

namespace {

Error badUrl(std::string_view text, const std::string& why) {
  return Error(ErrorKind::InvalidArgument, "Invalid URL '" + std::string(text.substr(0, 300)) + "': " + why);
}

Try<Url> fromView(boost::urls::url_view view, std::string_view text) {
  Url url;
  url.scheme = std::string(view.scheme());
  std::transform(url.scheme.begin(), url.scheme.end(), url.scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (url.scheme != "http" && url.scheme != "https") return badUrl(text, "the scheme must be http or https");
  if (!view.has_authority() || view.encoded_host().empty()) return badUrl(text, "it has no host");
  if (view.has_userinfo()) return badUrl(text, "credentials in URLs are not accepted");
  url.host = std::string(view.encoded_host_address());
  std::transform(url.host.begin(), url.host.end(), url.host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (view.has_port()) {
    if (view.port().empty() || view.port_number() == 0) return badUrl(text, "bad port");
    url.port = view.port_number();
  } else {
    url.port = url.scheme == "https" ? 443 : 80;
  }
  url.target = std::string(view.encoded_path());
  if (url.target.empty()) url.target = "/";
  if (view.has_query()) url.target += "?" + std::string(view.encoded_query());
  return url;
}

}  // namespace

std::string Url::hostForUrl() const { return host.find(':') != std::string::npos ? "[" + host + "]" : host; }

std::string Url::hostPort() const { return hostForUrl() + ":" + std::to_string(port); }

std::string Url::origin() const { return scheme + "://" + hostPort(); }

std::string Url::toString() const {
  const bool defaultPort = (scheme == "https" && port == 443) || (scheme == "http" && port == 80);
  return scheme + "://" + hostForUrl() + (defaultPort ? "" : ":" + std::to_string(port)) + target;
}

Try<Url> parseUrl(std::string_view text) {
  auto parsed = boost::urls::parse_absolute_uri(text);
  if (!parsed) return badUrl(text, parsed.error().message());
  return fromView(*parsed, text);
}

Try<Url> resolveRedirect(const Url& base, std::string_view location) {
  auto ref = boost::urls::parse_uri_reference(location);
  if (!ref) return badUrl(location, "not a URI reference: " + ref.error().message());
  const std::string baseText = base.toString();  // the view below points into it
  auto baseView = boost::urls::parse_absolute_uri(baseText);
  if (!baseView) return badUrl(baseText, baseView.error().message());
  boost::urls::url resolved(*baseView);
  if (auto r = resolved.resolve(*ref); !r) {
    return badUrl(location, "cannot be resolved against '" + base.toString() + "'");
  }
  return fromView(resolved, location);
}

bool sameOrigin(const Url& a, const Url& b) { return a.scheme == b.scheme && a.host == b.host && a.port == b.port; }

Try<Url> registryUrl(std::string_view registry, std::string_view target) {
  if (auto port = registryPort(registry); port.isError()) return port.error();
  return parseUrl("https://" + std::string(registry) + std::string(target));
}

}  // namespace prov::fetcher
