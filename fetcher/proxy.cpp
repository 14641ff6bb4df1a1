#include "fetcher/proxy.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "fetcher/auth.hpp"

namespace prov::fetcher {

namespace {

namespace ip = boost::asio::ip;

std::string lowered(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trimmed(std::string_view text) {
  const auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!text.empty() && space(text.front())) text.remove_prefix(1);
  while (!text.empty() && space(text.back())) text.remove_suffix(1);
  return text;
}

// Without brackets and a trailing dot, lowercased: how hosts compare.
std::string normalHost(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return lowered(host);
}

std::optional<ip::address> addressOf(const std::string& host) {
  boost::system::error_code ec;
  const auto address = ip::make_address(host, ec);
  if (ec) return std::nullopt;
  return address;
}

// Whether `address` is in `network`/`bits` (both of one family).
bool inBlock(const ip::address& address, const ip::address& network, int bits) {
  if (address.is_v4() != network.is_v4()) return false;
  std::vector<unsigned char> a, n;
  if (address.is_v4()) {
    const auto x = address.to_v4().to_bytes(), y = network.to_v4().to_bytes();
    a.assign(x.begin(), x.end());
    n.assign(y.begin(), y.end());
  } else {
    const auto x = address.to_v6().to_bytes(), y = network.to_v6().to_bytes();
    a.assign(x.begin(), x.end());
    n.assign(y.begin(), y.end());
  }
  if (bits < 0 || bits > static_cast<int>(a.size()) * 8) return false;
  for (std::size_t i = 0; bits > 0; ++i, bits -= 8) {
    const unsigned char mask = bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
    if ((a[i] & mask) != (n[i] & mask)) return false;
  }
  return true;
}

// Whether one no_proxy entry (trimmed, lowercased, not "*") covers host:port.
bool covers(std::string_view entry, const std::string& host, int port) {
  // The entry's own port: "name:80", "1.2.3.4:80", "[::1]:80"; an IPv6
  // address without brackets has more than one colon and no port.
  std::string_view name = entry;
  if (entry.front() == '[') {
    const auto close = entry.find(']');
    if (close == std::string_view::npos) return false;
    name = entry.substr(1, close - 1);
    const std::string_view rest = entry.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || std::atoi(std::string(rest.substr(1)).c_str()) != port) return false;
    }
  } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
    const auto colon = entry.find(':');
    if (std::atoi(std::string(entry.substr(colon + 1)).c_str()) != port) return false;
    name = entry.substr(0, colon);
  }
  const auto hostAddress = addressOf(host);
  if (const auto slash = name.find('/'); slash != std::string_view::npos) {
    const auto network = addressOf(std::string(name.substr(0, slash)));
    const std::string bits(name.substr(slash + 1));
    if (!network || !hostAddress || bits.empty() || !std::all_of(bits.begin(), bits.end(), ::isdigit)) return false;
    return inBlock(*hostAddress, *network, std::atoi(bits.c_str()));
  }
  if (const auto address = addressOf(std::string(name))) return hostAddress && *hostAddress == *address;
  if (name.substr(0, 2) == "*.") name.remove_prefix(2);
  if (!name.empty() && name.front() == '.') name.remove_prefix(1);
  const std::string domain = normalHost(name);
  if (domain.empty()) return false;
  return host == domain ||
         (host.size() > domain.size() && host.ends_with(domain) && host[host.size() - domain.size() - 1] == '.');
}

}  // namespace

std::string Proxy::shown() const {
  const bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Try<Proxy> parseProxy(std::string_view value, std::string_view variable) {
  // Messages never show `value`: it may hold a password.
  auto invalid = [&](const std::string& why) {
    return Error(ErrorKind::InvalidArgument, "Invalid proxy in " + std::string(variable) + ": " + why);
  };
  const std::string text = value.find("://") == std::string_view::npos ? "http://" + std::string(value)
                                                                       : std::string(value);
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) return invalid("not a URL (" + parsed.error().message() + ")");
  const std::string scheme = lowered(parsed->scheme());
  if (scheme != "http") {
    return invalid("'" + scheme + "://' proxies are not supported; give an http:// proxy");
  }
  Proxy proxy;
  proxy.host = normalHost(parsed->host_address());
  if (proxy.host.empty()) return invalid("the URL has no host");
  if (parsed->has_port()) {
    if (parsed->port().empty() || parsed->port_number() == 0) return invalid("bad port");
    proxy.port = parsed->port_number();
  }
  if (parsed->has_userinfo()) {
    messages::Credentials credentials;
    credentials.set_username(std::string(parsed->user()));
    credentials.set_password(std::string(parsed->password()));
    proxy.authorization = "Basic " + basicCredentials(credentials);
  }
  return proxy;
}

std::vector<std::string> parseNoProxy(std::string_view value) {
  std::vector<std::string> entries;
  while (!value.empty()) {
    const auto comma = value.find(',');
    const std::string_view entry = trimmed(value.substr(0, comma));
    if (!entry.empty()) entries.push_back(lowered(entry));
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
  }
  return entries;
}

Try<ProxySettings> proxyFromEnvironment(const EnvLookup& lookup) {
  auto get = [&](const std::string& name) -> std::optional<std::string> {
    if (lookup) return lookup(name);
    const char* value = std::getenv(name.c_str());
    return value ? std::optional<std::string>(value) : std::nullopt;
  };
  // The lower-case variable when set (even empty), else the upper-case one;
  // the name used, for messages.
  auto variable = [&](const std::string& lower) -> std::pair<std::string, std::string> {
    if (auto value = get(lower)) return {lower, *value};
    const std::string upper = [&] {
      std::string u = lower;
      std::transform(u.begin(), u.end(), u.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
      return u;
    }();
    return {upper, get(upper).value_or("")};
  };
  ProxySettings settings;
  for (auto [name, slot] : {std::pair{"http_proxy", &settings.http}, std::pair{"https_proxy", &settings.https}}) {
    const auto [used, value] = variable(name);
    if (trimmed(value).empty()) continue;
    auto proxy = parseProxy(trimmed(value), used);
    if (proxy.isError()) return proxy.error();
    *slot = std::move(*proxy);
  }
  settings.noProxy = parseNoProxy(variable("no_proxy").second);
  return settings;
}

bool bypassProxy(const ProxySettings& settings, const std::string& host, int port) {
  const std::string target = normalHost(host);
  return std::any_of(settings.noProxy.begin(), settings.noProxy.end(), [&](const std::string& entry) {
    return entry == "*" || (!entry.empty() && covers(entry, target, port));
  });
}

}  // namespace prov::fetcher
