#include "fetcher/auth.hpp"

#include <algorithm>

#include <openssl/evp.h>

#include <cctype>
#include <sstream>

#include <rapidjson/document.h>

#include "actors/fs.hpp"

namespace prov::fetcher {

namespace {

Error configError(const std::string& why) {
  return Error(ErrorKind::InvalidArgument, "Failed to parse the Docker config: " + why);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool isTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace

std::string parseAuthUrl(std::string_view key) {
  if (auto scheme = key.find("://"); scheme != std::string_view::npos) key = key.substr(scheme + 3);
  return std::string(key.substr(0, key.find('/')));
}

std::string canonicalRegistry(std::string_view registry) {
  const std::string host = lower(registry);
  if (host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io") return "docker.io";
  return host;
}

Try<DockerAuths> parseDockerConfig(std::string_view json) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return configError("it is not a JSON object");
  const rapidjson::Value* auths = &doc;
  if (auto it = doc.FindMember("auths"); it != doc.MemberEnd()) {
    if (!it->value.IsObject()) return configError("'auths' is not an object");
    auths = &it->value;
  }
  DockerAuths result;
  for (auto it = auths->MemberBegin(); it != auths->MemberEnd(); ++it) {
    const std::string key = it->name.GetString();
    if (auths == &doc && !it->value.IsObject()) continue;  // config.json's other settings
    if (!it->value.IsObject()) return configError("the entry for '" + key + "' is not an object");
    const rapidjson::Value& entry = it->value;
    auto text = [&](const char* name) -> std::string {
      auto m = entry.FindMember(name);
      return m != entry.MemberEnd() && m->value.IsString() ? m->value.GetString() : "";
    };
    messages::Credentials credentials;
    if (const std::string auth = text("auth"); !auth.empty()) {
      auto decoded = base64Decode(auth);
      const auto colon = decoded.isSome() ? decoded->find(':') : std::string::npos;
      if (colon == std::string::npos) {
        return configError("the 'auth' of '" + key + "' is not base64 of 'user:password'");
      }
      credentials.set_username(decoded->substr(0, colon));
      credentials.set_password(decoded->substr(colon + 1));
    } else {
      credentials.set_username(text("username"));
      credentials.set_password(text("password"));
    }
    credentials.set_identity_token(text("identitytoken"));
    result[canonicalRegistry(parseAuthUrl(key))] = credentials;
  }
  return result;
}

namespace {

// `fileOrJson` parsed by `parse`: inline JSON, or the file it names.
template <typename T>
Try<T> loadConfig(const std::string& fileOrJson, Try<T> (*parse)(std::string_view)) {
  const auto first = fileOrJson.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && fileOrJson[first] == '{') return parse(fileOrJson);
  auto text = actors::fs::readFile(fileOrJson);
  if (text.isError()) return Error(ErrorKind::NotFound, "Failed to read the Docker config '" + fileOrJson + "'");
  auto parsed = parse(*text);
  if (parsed.isError()) return parsed.error().withContext("'" + fileOrJson + "'");
  return parsed;
}

}  // namespace

Try<DockerAuths> loadDockerConfig(const std::string& fileOrJson) { return loadConfig(fileOrJson, &parseDockerConfig); }

std::optional<messages::Credentials> findCredentials(const DockerAuths& auths, std::string_view registry) {
  auto it = auths.find(canonicalRegistry(registry));
  if (it == auths.end()) return std::nullopt;
  return it->second;
}

std::string CredentialHelpers::forRegistry(std::string_view registry) const {
  auto it = byRegistry.find(canonicalRegistry(registry));
  return it != byRegistry.end() ? it->second : store;
}

Try<CredentialHelpers> parseCredentialHelpers(std::string_view json) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return configError("it is not a JSON object");
  auto validName = [](const std::string& name) {
    return !name.empty() && name.size() <= 100 && name.front() != '.' &&
           std::all_of(name.begin(), name.end(),
                       [](unsigned char c) { return std::isalnum(c) || c == '.' || c == '_' || c == '-'; });
  };
  CredentialHelpers helpers;
  if (auto it = doc.FindMember("credsStore"); it != doc.MemberEnd()) {
    if (!it->value.IsString()) return configError("'credsStore' is not a string");
    helpers.store = it->value.GetString();
    if (!helpers.store.empty() && !validName(helpers.store)) {
      return configError("'credsStore' names no helper: '" + helpers.store.substr(0, 100) + "'");
    }
  }
  if (auto it = doc.FindMember("credHelpers"); it != doc.MemberEnd()) {
    if (!it->value.IsObject()) return configError("'credHelpers' is not an object");
    for (auto h = it->value.MemberBegin(); h != it->value.MemberEnd(); ++h) {
      const std::string key = h->name.GetString();
      if (!h->value.IsString() || !validName(h->value.GetString())) {
        return configError("the credential helper of '" + key + "' is not a helper name");
      }
      helpers.byRegistry[canonicalRegistry(parseAuthUrl(key))] = h->value.GetString();
    }
  }
  return helpers;
}

Try<CredentialHelpers> loadCredentialHelpers(const std::string& fileOrJson) {
  return loadConfig(fileOrJson, &parseCredentialHelpers);
}

std::string helperServerUrl(std::string_view registry) {
  const std::string canonical = canonicalRegistry(registry);
  return canonical == "docker.io" ? "https://index.docker.io/v1/" : canonical;
}

Try<std::optional<messages::Credentials>> parseHelperAnswer(const std::string& helper, int status,
                                                            std::string_view output) {
  std::string_view trimmed = output;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) trimmed.remove_suffix(1);
  const std::string program = "docker-credential-" + helper;
  if (status != 0) {
    if (trimmed == "credentials not found in native keychain") return std::optional<messages::Credentials>();
    std::string line(trimmed.substr(0, trimmed.find('\n')).substr(0, 200));
    std::erase_if(line, [](unsigned char c) { return c < 0x20 || c == 0x7f; });
    return Error(ErrorKind::Unavailable, "The credential helper '" + program + "' failed (exit status " +
                                             std::to_string(status) + ")" + (line.empty() ? "" : ": " + line));
  }
  rapidjson::Document doc;
  doc.Parse(output.data(), output.size());
  auto text = [&](const char* name) -> std::string {
    auto m = doc.FindMember(name);
    return m != doc.MemberEnd() && m->value.IsString() ? m->value.GetString() : "";
  };
  if (doc.HasParseError() || !doc.IsObject()) {
    return Error(ErrorKind::Corruption, "The credential helper '" + program + "' answered something other than JSON");
  }
  const std::string username = text("Username"), secret = text("Secret");
  if (username.empty() && secret.empty()) return std::optional<messages::Credentials>();
  messages::Credentials credentials;
  if (username == "<token>") {
    credentials.set_identity_token(secret);
  } else {
    credentials.set_username(username);
    credentials.set_password(secret);
  }
  return std::optional<messages::Credentials>(std::move(credentials));
}

Try<std::vector<Challenge>> parseWwwAuthenticate(std::string_view header) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorKind::Corruption,
                 "Failed to parse WWW-Authenticate '" + std::string(header.substr(0, 200)) + "': " + why);
  };
  if (header.size() > 8192) return bad("longer than 8 KiB");
  std::vector<Challenge> challenges;
  std::size_t i = 0;
  auto skip = [&](std::string_view set) {
    while (i < header.size() && set.find(header[i]) != std::string_view::npos) ++i;
  };
  auto token = [&] {
    const std::size_t start = i;
    while (i < header.size() && isTokenChar(header[i])) ++i;
    return header.substr(start, i - start);
  };
  while (true) {
    skip(" \t,");
    if (i == header.size()) break;
    const std::string_view scheme = token();
    if (scheme.empty()) return bad("expected an auth scheme at offset " + std::to_string(i));
    challenges.push_back(Challenge{lower(scheme), {}});
    // auth-params until the next scheme or the end.
    while (true) {
      skip(" \t,");
      if (i == header.size()) break;
      const std::size_t start = i;
      const std::string_view name = token();
      if (name.empty()) return bad("unexpected character at offset " + std::to_string(i));
      skip(" \t");
      if (i == header.size() || header[i] != '=') {
        i = start;  // a new challenge
        break;
      }
      ++i;
      skip(" \t");
      std::string value;
      if (i < header.size() && header[i] == '"') {
        ++i;
        bool closed = false;
        while (i < header.size()) {
          char c = header[i++];
          if (c == '\\' && i < header.size()) {
            value.push_back(header[i++]);
          } else if (c == '"') {
            closed = true;
            break;
          } else {
            value.push_back(c);
          }
        }
        if (!closed) return bad("unterminated quoted string");
      } else {
        // RFC 7235 wants a token; servers also send bare URLs. Take anything
        // printable up to a comma or a space.
        while (i < header.size() && header[i] != ',' && header[i] != ' ' && header[i] != '\t') {
          const unsigned char c = static_cast<unsigned char>(header[i]);
          if (c < 0x21 || c == 0x7f || c == '"') return bad("bad character in parameter '" + std::string(name) + "'");
          value.push_back(header[i++]);
        }
        if (value.empty()) return bad("parameter '" + std::string(name) + "' has no value");
      }
      challenges.back().params[lower(name)] = value;
    }
  }
  if (challenges.empty()) return bad("no challenge");
  return challenges;
}

Try<std::string> base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return Error(ErrorKind::InvalidArgument, "bad base64 length");
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return Error(ErrorKind::InvalidArgument, "bad base64");
  // At most two '=', and only at the end (EVP_DecodeBlock lets more by).
  std::size_t padding = 0;
  while (padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  if (padding > 2 || text.find('=') < text.size() - padding || static_cast<std::size_t>(n) < padding) {
    return Error(ErrorKind::InvalidArgument, "bad base64 padding");
  }
  out.resize(static_cast<std::size_t>(n) - padding);
  return out;
}

std::string basicCredentials(const messages::Credentials& credentials) {
  const std::string plain = credentials.username() + ":" + credentials.password();
  std::string out(4 * ((plain.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(plain.data()), static_cast<int>(plain.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace prov::fetcher
