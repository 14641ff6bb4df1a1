#include "fetcher/signature.hpp"

#include <initializer_list>

#include "fetcher/digest.hpp"
#include "fetcher/json.hpp"
#include "fetcher/reference.hpp"

namespace prov::fetcher::signature {

namespace {

Error bad(const std::string& why) { return Error(ErrorKind::Corruption, "the signature's payload " + why); }

// `value` is an object with exactly `keys`.
Try<Nothing> exactly(const json::Value& value, std::initializer_list<const char*> keys, const std::string& where) {
  if (!value.IsObject()) return bad("has " + where + " that is not a JSON object");
  for (const char* key : keys) {
    if (!value.HasMember(key)) return bad("has no \"" + std::string(key) + "\" in " + where);
  }
  if (value.MemberCount() != keys.size()) {
    for (auto it = value.MemberBegin(); it != value.MemberEnd(); ++it) {
      const std::string name(it->name.GetString(), it->name.GetStringLength());
      bool known = false;
      for (const char* key : keys) known = known || name == key;
      if (!known) return bad("has an unknown key \"" + name + "\" in " + where);
    }
  }
  return Nothing{};
}

Try<std::string> stringAt(const json::Value& object, const char* key, const std::string& where) {
  const json::Value& value = object[key];
  if (!value.IsString()) return bad("has \"" + std::string(key) + "\" in " + where + " that is not a string");
  return std::string(value.GetString(), value.GetStringLength());
}

// The reference a claim or a policy names, normalised; none when it is
// not a reference.
std::optional<messages::ImageReference> referenceOf(const std::string& text) {
  auto parsed = parseImageReference(text);
  if (parsed.isError()) return std::nullopt;
  return normalizeKeepingTag(*parsed);
}

std::string nameOf(const messages::ImageReference& reference) {
  return reference.registry() + "/" + reference.repository();
}

bool hasTagOrDigest(const messages::ImageReference& reference) {
  return !reference.tag().empty() || !reference.digest().empty();
}

// matchRepoDigestOrExact: a pull by tag needs that tag's claim; a pull by
// digest alone takes any claim on the repository (the digest itself is
// checked against the payload's).
bool repoDigestOrExact(const messages::ImageReference& intended, const messages::ImageReference& claimed) {
  if (!hasTagOrDigest(claimed)) return false;
  if (!intended.tag().empty()) return toString(intended) == toString(claimed);
  return nameOf(intended) == nameOf(claimed);
}

}  // namespace

Try<Payload> parsePayload(std::string_view text, Format format) {
  rapidjson::Document doc;
  if (auto parsed = json::parse(
          doc, text, [](const std::string& why) { return bad("is " + why); }, 1 << 20);
      parsed.isError()) {
    return parsed.error();
  }
  if (const std::string repeated = json::repeatedKey(doc, true); !repeated.empty()) {
    return bad("has the key \"" + repeated + "\" twice in one object");
  }
  if (json::nulInKey(doc)) return bad("has a key that holds a NUL character");
  if (auto ok = exactly(doc, {"critical", "optional"}, "the document"); ok.isError()) return ok.error();
  const json::Value& critical = doc["critical"];
  if (auto ok = exactly(critical, {"type", "image", "identity"}, "\"critical\""); ok.isError()) return ok.error();
  auto type = stringAt(critical, "type", "\"critical\"");
  if (type.isError()) return type.error();
  const std::string_view expected = format == Format::SimpleSigning ? kSimpleSigningType : kSigstoreType;
  if (*type != expected) return bad("has type \"" + *type + "\", not \"" + std::string(expected) + "\"");
  const json::Value& image = critical["image"];
  if (auto ok = exactly(image, {"docker-manifest-digest"}, "\"critical.image\""); ok.isError()) return ok.error();
  auto digest = stringAt(image, "docker-manifest-digest", "\"critical.image\"");
  if (digest.isError()) return digest.error();
  if (validateDigest(*digest).isError()) return bad("names \"" + *digest + "\", which is not a digest");
  const json::Value& identity = critical["identity"];
  if (auto ok = exactly(identity, {"docker-reference"}, "\"critical.identity\""); ok.isError()) return ok.error();
  auto reference = stringAt(identity, "docker-reference", "\"critical.identity\"");
  if (reference.isError()) return reference.error();
  const json::Value& optional = doc["optional"];
  if (!(optional.IsNull() && format == Format::Sigstore)) {
    if (!optional.IsObject()) return bad("has \"optional\" that is not a JSON object");
    if (optional.HasMember("creator") && !optional["creator"].IsString()) {
      return bad("has \"optional.creator\" that is not a string");
    }
    if (optional.HasMember("timestamp") && !optional["timestamp"].IsInt64()) {
      return bad("has \"optional.timestamp\" that is not an integer");
    }
  }
  return Payload{*digest, *reference};
}

Try<std::string> simpleSigningOf(std::string_view blob) {
  if (blob.empty()) return Error(ErrorKind::Corruption, "the signature is empty");
  const auto first = static_cast<unsigned char>(blob.front());
  if (first == 0) {
    const auto newline = blob.find('\n');
    if (newline == std::string_view::npos) return Error(ErrorKind::Corruption, "the signature has no format line");
    const std::string_view format = blob.substr(1, newline - 1);
    if (format == "simple-signing") return std::string(blob.substr(newline + 1));
    return Error(ErrorKind::Corruption, "the signature is of format \"" + std::string(format.substr(0, 40)) +
                                            "\", not a simple signing signature");
  }
  // The first packet of an OpenPGP message, old or new format: compressed
  // data, a one-pass signature, or a signature.
  switch (first) {
    case 0xA0:
    case 0xA1:
    case 0xA2:
    case 0xA3:
    case 0xC8:  // compressed data
    case 0x90:
    case 0x91:
    case 0x92:
    case 0xC4:  // one-pass signature
    case 0x88:
    case 0x89:
    case 0x8A:
    case 0x8B:
    case 0xC2:  // signature
      return std::string(blob);
    default:
      return Error(ErrorKind::Corruption,
                   "the signature is not an OpenPGP message (an ASCII-armoured one is not read either)");
  }
}

bool identityMatches(const policy::SignedIdentity& identity, const std::optional<messages::ImageReference>& intended,
                     const std::string& signedReference) {
  const auto claimed = referenceOf(signedReference);
  if (!claimed) return false;
  using Kind = policy::SignedIdentity::Kind;
  switch (identity.kind) {
    case Kind::ExactReference: return hasTagOrDigest(*claimed) && toString(*claimed) == identity.reference;
    case Kind::ExactRepository: return nameOf(*claimed) == identity.repository;
    default: break;
  }
  if (!intended) return false;
  switch (identity.kind) {
    case Kind::MatchExact:
      return hasTagOrDigest(*intended) && hasTagOrDigest(*claimed) && toString(*intended) == toString(*claimed);
    case Kind::MatchRepository: return nameOf(*intended) == nameOf(*claimed);
    case Kind::RemapIdentity: {
      const std::string name = nameOf(*intended);
      if (name != identity.prefix && !name.starts_with(identity.prefix + "/")) {
        return repoDigestOrExact(*intended, *claimed);
      }
      // The prefix is at the start of the name, so of the whole reference.
      const std::string remapped = identity.signedPrefix + toString(*intended).substr(identity.prefix.size());
      // Taken as written: a remapped name that normalising would change
      // (a short name) is not a name.
      const auto parsed = parseImageReference(remapped);
      if (parsed.isError() || toString(normalizeKeepingTag(*parsed)) != remapped) return false;
      return repoDigestOrExact(normalizeKeepingTag(*parsed), *claimed);
    }
    default:  // MatchRepoDigestOrExact
      return repoDigestOrExact(*intended, *claimed);
  }
}

}  // namespace prov::fetcher::signature
