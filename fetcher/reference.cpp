#include "fetcher/reference.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cctype>
#include <vector>

#include "fetcher/digest.hpp"

namespace prov::fetcher {

namespace {

Error invalid(std::string_view text, const std::string& why) {
  return Error(ErrorKind::InvalidArgument,
               "Invalid image reference '" + std::string(text.substr(0, 300)) + "': " + why);
}

bool isAlnumLower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// path-component = [a-z0-9]+ (separator [a-z0-9]+)*, separator = [_.] | __ | [-]+
bool validPathComponent(std::string_view c) {
  if (c.empty() || !isAlnumLower(c.front()) || !isAlnumLower(c.back())) return false;
  for (std::size_t i = 0; i < c.size();) {
    if (isAlnumLower(c[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < c.size() && !isAlnumLower(c[j])) ++j;
    const std::string_view sep = c.substr(i, j - i);
    const bool dashes = sep.find_first_not_of('-') == std::string_view::npos;
    if (!(sep == "." || sep == "_" || sep == "__" || dashes)) return false;
    i = j;
  }
  return true;
}

// Where the port's ':' is in a registry, or npos: after an IPv6 literal's
// closing bracket.
std::size_t portColon(std::string_view registry) {
  const auto close = registry.front() == '[' ? registry.find(']') : 0;
  if (close == std::string_view::npos) return std::string_view::npos;
  return registry.find(':', close);
}

// domain-component ('.' domain-component)* (':' port)?, or an IPv6 literal
// in brackets with an optional port (as distribution/reference accepts
// since v0.6): "[::1]:5000".
bool validRegistry(std::string_view r) {
  if (!r.empty() && r.front() == '[') {
    const auto close = r.find(']');
    if (close == std::string_view::npos) return false;
    const std::string inside(r.substr(1, close - 1));
    in6_addr address{};
    if (::inet_pton(AF_INET6, inside.c_str(), &address) != 1) return false;
    return close + 1 == r.size() || r[close + 1] == ':';
  }
  const auto colon = r.rfind(':');
  std::string_view host = colon == std::string_view::npos ? r : r.substr(0, colon);
  if (host.empty()) return false;
  std::size_t start = 0;
  while (start <= host.size()) {
    const auto dot = host.find('.', start);
    const std::string_view part = host.substr(start,
                                              dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (part.empty() || !std::isalnum(static_cast<unsigned char>(part.front())) ||
        !std::isalnum(static_cast<unsigned char>(part.back()))) {
      return false;
    }
    for (char c : part) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

// [\w][\w.-]{0,127}
bool validTag(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t.front())) return false;
  for (char c : t) {
    if (!word(c) && c != '.' && c != '-') return false;
  }
  return true;
}

bool looksLikeRegistry(std::string_view first) {
  return first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos || first == "localhost";
}

}  // namespace

Try<messages::ImageReference> parseImageReference(std::string_view text) {
  messages::ImageReference reference;
  if (text.empty()) return invalid(text, "it is empty");
  std::string_view rest = text;

  // 1. @digest
  if (const auto at = rest.find('@'); at != std::string_view::npos) {
    if (rest.find('@', at + 1) != std::string_view::npos) return invalid(text, "multiple '@' symbols found");
    const std::string_view digest = rest.substr(at + 1);
    if (auto valid = validateDigest(digest); valid.isError()) return invalid(text, valid.error().message);
    reference.set_digest(std::string(digest));
    rest = rest.substr(0, at);
  }
  // 2. :tag, when the part after the last ':' has no '/'
  if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    const std::string_view tag = rest.substr(colon + 1);
    if (tag.find('/') == std::string_view::npos) {
      if (!validTag(tag)) {
        return invalid(text, "tag '" + std::string(tag.substr(0, 200)) +
                                 "' must be 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'");
      }
      reference.set_tag(std::string(tag));
      rest = rest.substr(0, colon);
    }
  }
  // 3. registry/ when the first component looks like a host
  if (const auto slash = rest.find('/'); slash != std::string_view::npos && looksLikeRegistry(rest.substr(0, slash))) {
    const std::string_view registry = rest.substr(0, slash);
    if (!validRegistry(registry))
      return invalid(text, "registry '" + std::string(registry) + "' is not a valid host[:port]");
    if (auto port = registryPort(registry); port.isError()) return invalid(text, port.error().message);
    reference.set_registry(std::string(registry));
    rest = rest.substr(slash + 1);
  }
  if (rest.empty()) return invalid(text, "the repository name is empty");
  if (rest.size() > 255) return invalid(text, "the repository name is longer than 255 characters");
  std::size_t start = 0;
  while (true) {
    const auto slash = rest.find('/', start);
    const std::string_view component = rest.substr(start, slash == std::string_view::npos ? std::string_view::npos
                                                                                          : slash - start);
    if (!validPathComponent(component)) {
      return invalid(text, "repository component '" + std::string(component.substr(0, 200)) +
                               "' must be lowercase letters and digits, separated by '.', '_', '__' or '-'");
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  reference.set_repository(std::string(rest));
  return reference;
}

messages::ImageReference normalize(const messages::ImageReference& reference) {
  messages::ImageReference out = reference;
  const std::string& registry = reference.registry();
  if (registry.empty() || registry == "index.docker.io" || registry == "registry-1.docker.io") {
    out.set_registry(kDockerHub);
  }
  if (out.registry() == kDockerHub && out.repository().find('/') == std::string::npos) {
    out.set_repository("library/" + out.repository());
  }
  if (out.tag().empty() && out.digest().empty()) out.set_tag("latest");
  return out;
}

messages::ImageReference normalizeKeepingTag(const messages::ImageReference& reference) {
  messages::ImageReference normal = normalize(reference);
  if (reference.tag().empty() && reference.digest().empty()) normal.clear_tag();
  return normal;
}

Try<messages::ImageReference> parseNormalized(std::string_view text) {
  auto parsed = parseImageReference(text);
  if (parsed.isError()) return parsed;
  return normalize(*parsed);
}

std::string toString(const messages::ImageReference& reference) {
  std::string out = reference.registry().empty() ? "" : reference.registry() + "/";
  out += reference.repository();
  if (!reference.tag().empty()) out += ":" + reference.tag();
  if (!reference.digest().empty()) out += "@" + reference.digest();
  return out;
}

std::string registryHost(std::string_view registry) {
  if (registry.empty()) return "";
  return std::string(registry.substr(0, portColon(registry)));
}

Try<std::optional<int>> registryPort(std::string_view registry) {
  const auto colon = registry.empty() ? std::string_view::npos : portColon(registry);
  if (colon == std::string_view::npos) return std::optional<int>{};
  const std::string_view port = registry.substr(colon + 1);
  auto bad = [&] {
    return Error(ErrorKind::InvalidArgument, "Invalid registry port in '" + std::string(registry) + "'");
  };
  if (port.empty() || port.size() > 5) return bad();
  int value = 0;
  for (char c : port) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return bad();
    value = value * 10 + (c - '0');
  }
  if (value < 1 || value > 65535) return bad();
  return std::optional<int>(value);
}

}  // namespace prov::fetcher
