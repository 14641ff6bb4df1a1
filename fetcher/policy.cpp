#include "fetcher/policy.hpp"

#include <algorithm>
#include <filesystem>
#include <initializer_list>

#include "actors/fs.hpp"
#include "fetcher/auth.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/json.hpp"
#include "fetcher/reference.hpp"

namespace prov::fetcher::policy {

using actors::Error;
using actors::ErrorKind;
using actors::Nothing;

namespace {

// Reading one policy file: every error names the file and where in it.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  Error fail(const std::string& why) const {
    return Error(ErrorKind::InvalidArgument, "Invalid signature policy in '" + file_ + "': " + why);
  }
  json::Fail failIn(const std::string& where) const {
    return [this, where](const std::string& why) { return fail(where + ": " + why); };
  }

  // `value` is an object whose keys are all in `allowed`.
  Try<Nothing> object(const json::Value& value, std::initializer_list<const char*> allowed,
                      const std::string& where) const {
    if (!value.IsObject()) return fail(where + " is not a JSON object");
    for (auto it = value.MemberBegin(); it != value.MemberEnd(); ++it) {
      const std::string key(it->name.GetString(), it->name.GetStringLength());
      if (std::none_of(allowed.begin(), allowed.end(), [&](const char* k) { return key == k; })) {
        return fail("unknown key \"" + key + "\" in " + where);
      }
    }
    return Nothing{};
  }

  Try<std::vector<Requirement>> requirements(const json::Value& value, const std::string& where) const {
    if (!value.IsArray()) return fail(where + " is not a list of requirements");
    if (value.Empty())
      return fail(where + " lists no requirements (an empty list is not \"accept\": say insecureAcceptAnything)");
    std::vector<Requirement> list;
    for (rapidjson::SizeType i = 0; i < value.Size(); ++i) {
      auto one = requirement(value[i], where + "[" + std::to_string(i) + "]");
      if (one.isError()) return one.error();
      list.push_back(std::move(*one));
    }
    return list;
  }

  Try<Requirement> requirement(const json::Value& value, const std::string& where) const {
    if (!value.IsObject()) return fail(where + " is not a JSON object");
    auto type = json::string(value, "type", true, failIn(where));
    if (type.isError()) return type.error();
    Requirement r;
    if (*type == "insecureAcceptAnything" || *type == "reject") {
      r.type = *type == "reject" ? Requirement::Type::Reject : Requirement::Type::InsecureAcceptAnything;
      if (auto ok = object(value, {"type"}, where); ok.isError()) return ok.error();
      return r;
    }
    if (*type == "signedBy") {
      r.type = Requirement::Type::SignedBy;
      if (auto ok = object(value, {"type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"}, where);
          ok.isError())
        return ok.error();
      auto keyType = json::string(value, "keyType", true, failIn(where));
      if (keyType.isError()) return keyType.error();
      if (*keyType != "GPGKeys") {
        return fail(where + ": keyType \"" + *keyType +
                    "\" is not supported (only GPGKeys is, as in containers/image)");
      }
      if (auto keys = keysOf(value, {"keyPath", "keyPaths", "keyData"}, where, r); keys.isError()) return keys.error();
    } else if (*type == "sigstoreSigned") {
      r.type = Requirement::Type::SigstoreSigned;
      for (const char* unsupported : {"fulcio", "pki", "rekorPublicKeyPath", "rekorPublicKeyPaths",
                                      "rekorPublicKeyData", "rekorPublicKeyDatas"}) {
        if (value.HasMember(unsupported)) {
          return fail(where + ": \"" + unsupported +
                      "\" is not supported (public keys only: keyPath, keyPaths, "
                      "keyData, keyDatas)");
        }
      }
      if (auto ok = object(value, {"type", "keyPath", "keyPaths", "keyData", "keyDatas", "signedIdentity"}, where);
          ok.isError())
        return ok.error();
      if (auto keys = keysOf(value, {"keyPath", "keyPaths", "keyData", "keyDatas"}, where, r); keys.isError())
        return keys.error();
    } else if (*type == "signedBaseLayer") {
      return fail(where + ": signedBaseLayer is not supported (containers/image does not check it either)");
    } else {
      return fail(where + ": unknown requirement type \"" + *type + "\"");
    }
    if (value.HasMember("signedIdentity")) {
      auto identity = signedIdentity(value["signedIdentity"], where + ".signedIdentity");
      if (identity.isError()) return identity.error();
      r.identity = *identity;
    }
    return r;
  }

  // Exactly one of `fields` (paths: a string or a list; data: base64).
  Try<Nothing> keysOf(const json::Value& value, std::initializer_list<const char*> fields, const std::string& where,
                      Requirement& r) const {
    std::string names;
    int present = 0;
    for (const char* field : fields) {
      names += std::string(names.empty() ? "" : ", ") + field;
      if (value.HasMember(field)) ++present;
    }
    if (present != 1) {
      return fail(where + ": exactly one of " + names + " must be given, " +
                  (present == 0 ? "none is" : std::to_string(present) + " are"));
    }
    const json::Fail failHere = failIn(where);
    for (const char* field : fields) {
      if (!value.HasMember(field)) continue;
      const std::string name = field;
      const bool many = name.back() == 's';
      std::vector<std::string> items;
      if (many) {
        auto list = json::strings(value, field, true, failHere, 64);
        if (list.isError()) return list.error();
        if (list->empty()) return fail(where + ": " + name + " is empty");
        items = *list;
      } else {
        auto one = json::string(value, field, true, failHere);
        if (one.isError()) return one.error();
        items.push_back(*one);
      }
      for (auto& item : items) {
        if (name.starts_with("keyPath")) {
          if (item.empty() || item.front() != '/')
            return fail(where + ": " + name + " \"" + item + "\" is not an absolute path");
          r.keyPaths.push_back(item);
        } else {
          auto decoded = base64Decode(item);
          if (decoded.isError() || decoded->empty()) return fail(where + ": " + name + " is not base64 of a key");
          r.keyData.push_back(*decoded);
        }
      }
    }
    return Nothing{};
  }

  Try<SignedIdentity> signedIdentity(const json::Value& value, const std::string& where) const {
    if (!value.IsObject()) return fail(where + " is not a JSON object");
    auto type = json::string(value, "type", true, failIn(where));
    if (type.isError()) return type.error();
    SignedIdentity id;
    using Kind = SignedIdentity::Kind;
    const std::map<std::string, Kind> kinds = {{"matchRepoDigestOrExact", Kind::MatchRepoDigestOrExact},
                                               {"matchRepository", Kind::MatchRepository},
                                               {"matchExact", Kind::MatchExact},
                                               {"exactReference", Kind::ExactReference},
                                               {"exactRepository", Kind::ExactRepository},
                                               {"remapIdentity", Kind::RemapIdentity}};
    auto kind = kinds.find(*type);
    if (kind == kinds.end()) return fail(where + ": unknown signedIdentity type \"" + *type + "\"");
    id.kind = kind->second;
    switch (id.kind) {
      case Kind::ExactReference: {
        if (auto ok = object(value, {"type", "dockerReference"}, where); ok.isError()) return ok.error();
        auto text = json::string(value, "dockerReference", true, failIn(where));
        if (text.isError()) return text.error();
        auto parsed = parseImageReference(*text);
        if (parsed.isError() || (parsed->tag().empty() && parsed->digest().empty())) {
          return fail(where + ": dockerReference \"" + *text + "\" is not a reference with a tag or digest");
        }
        id.reference = toString(normalizeKeepingTag(*parsed));
        break;
      }
      case Kind::ExactRepository: {
        if (auto ok = object(value, {"type", "dockerRepository"}, where); ok.isError()) return ok.error();
        auto text = json::string(value, "dockerRepository", true, failIn(where));
        if (text.isError()) return text.error();
        auto parsed = parseImageReference(*text);
        if (parsed.isError()) return fail(where + ": dockerRepository \"" + *text + "\" is not a repository");
        messages::ImageReference name = normalizeKeepingTag(*parsed);
        name.clear_tag();
        name.clear_digest();
        id.repository = toString(name);
        break;
      }
      case Kind::RemapIdentity: {
        if (auto ok = object(value, {"type", "prefix", "signedPrefix"}, where); ok.isError()) return ok.error();
        for (auto [field, target] : {std::pair{"prefix", &id.prefix}, std::pair{"signedPrefix", &id.signedPrefix}}) {
          auto text = json::string(value, field, true, failIn(where));
          if (text.isError()) return text.error();
          if (!validPrefix(*text)) {
            return fail(where + ": " + field + " \"" + *text + "\" is neither host[:port] nor a repository below one");
          }
          *target = *text;
        }
        break;
      }
      default:
        if (auto ok = object(value, {"type"}, where); ok.isError()) return ok.error();
    }
    return id;
  }

  // "host[:port]" or "host[:port]/path" (no trailing slash), where host
  // holds a dot or a colon or is localhost (what makes it a registry).
  static bool validPrefix(const std::string& prefix) {
    if (prefix.empty() || prefix.back() == '/' || prefix.find("//") != std::string::npos) return false;
    const std::string host = prefix.substr(0, prefix.find('/'));
    if (host.find_first_of(".:") == std::string::npos && host != "localhost") return false;
    return prefix.find_first_of(" @\t\n") == std::string::npos;
  }

  // A scope of `transport` as containers/image accepts it.
  Try<Nothing> validScope(const std::string& transport, const std::string& scope, const std::string& where) const {
    if (scope.empty()) return Nothing{};
    if (transport == "oci") {
      if (scope.front() != '/' || scope == "/" || std::filesystem::path(scope).lexically_normal().string() != scope ||
          scope.back() == '/') {
        return fail(where + ": an oci scope is a clean absolute path, not \"" + scope + "\"");
      }
    } else if (transport == "docker-archive") {
      return fail(where + ": docker-archive takes only the \"\" scope");
    }
    return Nothing{};
  }

 private:
  std::string file_;
};

}  // namespace

std::string Applied::describe() const {
  if (transport.empty()) return "default";
  return "transports." + transport + "[\"" + scope + "\"]";
}

std::vector<std::string> dockerScopes(const messages::ImageReference& reference) {
  std::vector<std::string> scopes;
  const std::string name = reference.registry() + "/" + reference.repository();
  scopes.push_back(toString(reference));
  for (std::string prefix = name;;) {
    scopes.push_back(prefix);
    const auto slash = prefix.rfind('/');
    if (slash == std::string::npos) break;
    prefix.resize(slash);
  }
  // The host without its port, as wildcards of its parent domains.
  const std::string host = registryHost(reference.registry());
  for (auto dot = host.find('.'); dot != std::string::npos; dot = host.find('.', dot + 1)) {
    scopes.push_back("*" + host.substr(dot));
  }
  return scopes;
}

Try<Policy> Policy::parse(std::string_view text, const std::string& file) {
  const Reader reader(file);
  rapidjson::Document doc;
  if (auto parsed = json::parse(doc, text, reader.failIn("the file"), 4 * 1024 * 1024); parsed.isError()) {
    return parsed.error();
  }
  if (const std::string repeated = json::repeatedKey(doc, true); !repeated.empty()) {
    return reader.fail("the key \"" + repeated + "\" appears twice in one object");
  }
  if (json::nulInKey(doc)) return reader.fail("a key holds a NUL character (\\u0000)");
  if (auto ok = reader.object(doc, {"default", "transports"}, "the policy"); ok.isError()) return ok.error();
  Policy policy;
  if (!doc.HasMember("default") || doc["default"].IsNull()) return reader.fail("there is no \"default\"");
  auto fallback = reader.requirements(doc["default"], "default");
  if (fallback.isError()) return fallback.error();
  policy.default_ = std::move(*fallback);
  if (doc.HasMember("transports") && !doc["transports"].IsNull()) {
    const json::Value& transports = doc["transports"];
    if (!transports.IsObject()) return reader.fail("\"transports\" is not a JSON object");
    for (auto t = transports.MemberBegin(); t != transports.MemberEnd(); ++t) {
      const std::string transport(t->name.GetString(), t->name.GetStringLength());
      const std::string where = "transports." + transport;
      if (!t->value.IsObject()) return reader.fail(where + " is not a JSON object");
      for (auto s = t->value.MemberBegin(); s != t->value.MemberEnd(); ++s) {
        const std::string scope(s->name.GetString(), s->name.GetStringLength());
        const std::string at = where + "[\"" + scope + "\"]";
        if (auto valid = reader.validScope(transport, scope, at); valid.isError()) return valid.error();
        auto list = reader.requirements(s->value, at);
        if (list.isError()) return list.error();
        policy.transports_[transport][scope] = std::move(*list);
      }
    }
  }
  policy.digest_ = sha256Digest(text);
  return policy;
}

Try<Policy> Policy::load(const std::string& file) {
  auto text = actors::fs::readFile(file);
  if (text.isError()) {
    return Error(ErrorKind::InvalidArgument,
                 "Failed to read the signature policy '" + file + "': " + text.error().message);
  }
  return parse(*text, file);
}

Applied Policy::lookUp(const std::string& transport, const std::vector<std::string>& scopes) const {
  if (auto t = transports_.find(transport); t != transports_.end()) {
    for (const auto& scope : scopes) {
      if (auto s = t->second.find(scope); s != t->second.end()) return Applied{transport, scope, &s->second};
    }
    if (auto s = t->second.find(""); s != t->second.end()) return Applied{transport, "", &s->second};
  }
  return Applied{"", "default", &default_};
}

Applied Policy::forDocker(const messages::ImageReference& reference) const {
  return lookUp("docker", dockerScopes(reference));
}

Applied Policy::forOci(const std::string& path) const {
  std::vector<std::string> scopes;
  for (std::string dir = path; !dir.empty() && dir != "/";) {
    scopes.push_back(dir);
    const auto slash = dir.rfind('/');
    if (slash == std::string::npos || slash == 0) break;
    dir.resize(slash);
  }
  return lookUp("oci", scopes);
}

std::vector<Applied> Policy::all() const {
  std::vector<Applied> lists = {Applied{"", "default", &default_}};
  for (const auto& [transport, scopes] : transports_) {
    for (const auto& [scope, list] : scopes) lists.push_back(Applied{transport, scope, &list});
  }
  return lists;
}

Applied Policy::forDockerArchive() const { return lookUp("docker-archive", {}); }

}  // namespace prov::fetcher::policy
