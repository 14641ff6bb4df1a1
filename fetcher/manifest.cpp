#include "fetcher/manifest.hpp"

#include <sys/utsname.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <set>

#include <rapidjson/document.h>

#include "fetcher/auth.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/json.hpp"

namespace prov::fetcher {

namespace {

using rapidjson::Value;

// Reads typed fields of one JSON document, naming the document in errors.
class Reader {
 public:
  explicit Reader(std::string what) : what_(std::move(what)) {}

  Error corrupt(const std::string& why) const {
    return Error(ErrorKind::Corruption, "Failed to parse " + what_ + ": " + why);
  }
  Error unsupported(const std::string& why) const {
    return Error(ErrorKind::Unsupported, "Failed to use " + what_ + ": " + why);
  }

  Try<Nothing> parse(rapidjson::Document& doc, std::string_view body, std::size_t limit) const {
    if (auto parsed = json::parse(doc, body, fail(), limit); parsed.isError()) return parsed;
    if (!doc.IsObject()) return corrupt("expected a JSON object");
    return noDuplicates(doc, "the document");
  }

  Try<Nothing> noDuplicates(const Value& object, const std::string& where) const {
    if (auto key = json::repeatedKey(object, false); !key.empty()) {
      return corrupt("key '" + key + "' appears twice in " + where);
    }
    return Nothing{};
  }

  // A string member; "" when absent and not required (or JSON null).
  Try<std::string> string(const Value& object, const char* key, bool required) const {
    return json::string(object, key, required, fail());
  }

  Try<std::int64_t> integer(const Value& object, const char* key, bool required) const {
    return json::integer(object, key, required, fail());
  }

  // An array of strings; empty when absent or null.
  Try<Nothing> strings(const Value& object, const char* key,
                       google::protobuf::RepeatedPtrField<std::string>* out) const {
    auto values = json::strings(object, key, false, fail());
    if (values.isError()) return values.error();
    for (auto& value : *values) out->Add(std::move(value));
    return Nothing{};
  }

  // An object of string values; empty when absent or null.
  Try<Nothing> stringMap(const Value& object, const char* key,
                         google::protobuf::Map<std::string, std::string>* out) const {
    auto it = object.FindMember(key);
    if (it == object.MemberEnd() || it->value.IsNull()) return Nothing{};
    if (!it->value.IsObject()) return corrupt("'" + std::string(key) + "' is not an object");
    for (auto m = it->value.MemberBegin(); m != it->value.MemberEnd(); ++m) {
      if (!m->value.IsString()) return corrupt("'" + std::string(key) + "' has a non-string value");
      (*out)[m->name.GetString()] = std::string(m->value.GetString(), m->value.GetStringLength());
    }
    return Nothing{};
  }

  // The keys of an object member ("ExposedPorts", "Volumes").
  Try<Nothing> keys(const Value& object, const char* key, google::protobuf::RepeatedPtrField<std::string>* out) const {
    auto it = object.FindMember(key);
    if (it == object.MemberEnd() || it->value.IsNull()) return Nothing{};
    if (!it->value.IsObject()) return corrupt("'" + std::string(key) + "' is not an object");
    for (auto m = it->value.MemberBegin(); m != it->value.MemberEnd(); ++m) out->Add(m->name.GetString());
    return Nothing{};
  }

  Try<Nothing> digest(const std::string& value, const std::string& where) const {
    if (auto valid = validateDigest(value); valid.isError()) {
      return Error(ErrorKind::InvalidArgument,
                   "Failed to parse " + what_ + ": " + where + ": " + valid.error().message);
    }
    return Nothing{};
  }

  Try<messages::Platform> platform(const Value& object) const {
    auto os = string(object, "os", true);
    auto architecture = string(object, "architecture", true);
    auto variant = string(object, "variant", false);
    auto osVersion = string(object, "os.version", false);
    for (auto* field : {&os, &architecture, &variant, &osVersion}) {
      if (field->isError()) return field->error();
    }
    messages::Platform p;
    p.set_os(*os);
    p.set_architecture(*architecture);
    p.set_variant(*variant);
    p.set_os_version(*osVersion);
    if (auto r = strings(object, "os.features", p.mutable_os_features()); r.isError()) return r.error();
    return p;
  }

  Try<messages::Descriptor> descriptor(const Value& value, const std::string& where) const {
    if (!value.IsObject()) return corrupt(where + " is not an object");
    if (auto unique = noDuplicates(value, where); unique.isError()) return unique.error();
    messages::Descriptor d;
    auto mediaType = string(value, "mediaType", true);
    if (mediaType.isError()) return mediaType.error().withContext(where);
    d.set_media_type(*mediaType);
    auto digestText = string(value, "digest", true);
    if (digestText.isError()) return digestText.error().withContext(where);
    if (auto valid = digest(*digestText, where); valid.isError()) return valid.error();
    d.set_digest(*digestText);
    auto size = integer(value, "size", true);
    if (size.isError()) return size.error().withContext(where);
    if (*size < 0) return corrupt(where + " has a negative size");
    d.set_size(*size);
    if (auto r = strings(value, "urls", d.mutable_urls()); r.isError()) return r.error();
    if (auto r = stringMap(value, "annotations", d.mutable_annotations()); r.isError()) return r.error();
    if (auto it = value.FindMember("platform"); it != value.MemberEnd()) {
      if (!it->value.IsObject()) return corrupt(where + ": 'platform' is not an object");
      auto p = platform(it->value);
      if (p.isError()) return p.error();
      *d.mutable_platform() = *p;
    }
    return d;
  }

  const std::string& what() const { return what_; }

 private:
  json::Fail fail() const {
    return [this](const std::string& why) { return corrupt(why); };
  }

  std::string what_;
};

bool isManifestType(std::string_view t) { return t == mediatype::kOciManifest || t == mediatype::kDockerSchema2; }
bool isIndexType(std::string_view t) { return t == mediatype::kOciIndex || t == mediatype::kDockerList; }
bool isSchema1Type(std::string_view t) {
  return t == mediatype::kDockerSchema1 || t == mediatype::kDockerSchema1Signed;
}
bool isKnownDocumentType(std::string_view t) { return isManifestType(t) || isIndexType(t) || isSchema1Type(t); }

// "application/json; charset=utf-8" -> "application/json"
std::string_view bareType(std::string_view contentType) {
  const auto semicolon = contentType.find(';');
  std::string_view t = contentType.substr(0, semicolon);
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t;
}

Try<messages::Index> parseIndex(const Reader& r, const Value& doc, const std::string& declared) {
  messages::Index index;
  index.set_media_type(declared.empty() ? mediatype::kOciIndex : declared);
  auto version = r.integer(doc, "schemaVersion", true);
  if (version.isError()) return version.error();
  if (*version != 2) return r.corrupt("schemaVersion must be 2 for an index, got " + std::to_string(*version));
  index.set_schema_version(2);
  const Value& manifests = doc["manifests"];
  if (!manifests.IsArray()) return r.corrupt("'manifests' is not an array");
  if (manifests.Size() > static_cast<unsigned>(kMaxEntries))
    return r.corrupt("more than " + std::to_string(kMaxEntries) + " manifests");
  for (unsigned i = 0; i < manifests.Size(); ++i) {
    auto d = r.descriptor(manifests[i], "manifests[" + std::to_string(i) + "]");
    if (d.isError()) return d.error();
    *index.add_manifests() = *d;
  }
  if (auto a = r.stringMap(doc, "annotations", index.mutable_annotations()); a.isError()) return a.error();
  return index;
}

Try<messages::Manifest> parseImageManifest(const Reader& r, const Value& doc, const std::string& declared) {
  messages::Manifest m;
  const bool docker = declared == mediatype::kDockerSchema2;
  m.set_kind(docker ? messages::Manifest::DOCKER_SCHEMA2 : messages::Manifest::OCI);
  m.set_media_type(declared.empty() ? mediatype::kOciManifest : declared);
  auto version = r.integer(doc, "schemaVersion", true);
  if (version.isError()) return version.error();
  if (*version != 2) return r.corrupt("schemaVersion must be 2, got " + std::to_string(*version));
  m.set_schema_version(2);
  if (docker && !doc.HasMember("mediaType")) return r.corrupt("a schema 2 manifest must name its mediaType");

  if (!doc.HasMember("config")) return r.corrupt("'config' is missing");
  auto config = r.descriptor(doc["config"], "config");
  if (config.isError()) return config.error();
  if (config->media_type() != mediatype::kDockerConfig && config->media_type() != mediatype::kOciConfig) {
    return r.unsupported("config media type '" + config->media_type() + "' is not a container image config");
  }
  *m.mutable_config() = *config;

  if (!doc.HasMember("layers") || !doc["layers"].IsArray()) return r.corrupt("'layers' is missing or not an array");
  const Value& layers = doc["layers"];
  if (layers.Empty()) return r.corrupt("an image manifest needs at least one layer");
  if (layers.Size() > static_cast<unsigned>(kMaxEntries))
    return r.corrupt("more than " + std::to_string(kMaxEntries) + " layers");
  for (unsigned i = 0; i < layers.Size(); ++i) {
    auto d = r.descriptor(layers[i], "layers[" + std::to_string(i) + "]");
    if (d.isError()) return d.error();
    if (auto c = layerCompression(d->media_type()); c.isError()) {
      return r.unsupported("layers[" + std::to_string(i) + "]: " + c.error().message);
    }
    *m.add_layers() = *d;
  }
  if (auto a = r.stringMap(doc, "annotations", m.mutable_annotations()); a.isError()) return a.error();
  return m;
}

Try<messages::Manifest> parseSchema1(const Reader& r, const Value& doc, const std::string& declared) {
  messages::Manifest m;
  m.set_kind(messages::Manifest::DOCKER_SCHEMA1);
  m.set_media_type(declared.empty() ? mediatype::kDockerSchema1Signed : declared);
  auto version = r.integer(doc, "schemaVersion", true);
  if (version.isError()) return version.error();
  if (*version != 1) return r.corrupt("schemaVersion must be 1 for a schema 1 manifest");
  m.set_schema_version(1);
  for (const char* key : {"name", "tag", "architecture"}) {
    auto v = r.string(doc, key, true);
    if (v.isError()) return v.error();
    if (std::string_view(key) == "name") m.set_name(*v);
    if (std::string_view(key) == "tag") m.set_tag(*v);
    if (std::string_view(key) == "architecture") m.set_architecture(*v);
  }
  auto fsLayers = doc.FindMember("fsLayers");
  auto history = doc.FindMember("history");
  if (fsLayers == doc.MemberEnd() || !fsLayers->value.IsArray() || fsLayers->value.Empty()) {
    return r.corrupt("'fsLayers' must be a non-empty array");
  }
  if (history == doc.MemberEnd() || !history->value.IsArray() || history->value.Empty()) {
    return r.corrupt("'history' must be a non-empty array");
  }
  const unsigned n = fsLayers->value.Size();
  if (history->value.Size() != n) return r.corrupt("'fsLayers' and 'history' differ in length");
  if (n > static_cast<unsigned>(kMaxEntries)) return r.corrupt("more than " + std::to_string(kMaxEntries) + " layers");
  // The manifest lists the top layer first; the message keeps base first.
  for (unsigned k = n; k-- > 0;) {
    const Value& layer = fsLayers->value[k];
    const Value& entry = history->value[k];
    if (!layer.IsObject() || !entry.IsObject()) return r.corrupt("fsLayers/history entries must be objects");
    auto blobSum = r.string(layer, "blobSum", true);
    if (blobSum.isError()) return blobSum.error();
    if (auto valid = r.digest(*blobSum, "fsLayers[" + std::to_string(k) + "]"); valid.isError()) return valid.error();
    auto v1 = r.string(entry, "v1Compatibility", true);
    if (v1.isError()) return v1.error();
    rapidjson::Document v1doc;
    v1doc.Parse(v1->data(), v1->size());
    if (v1doc.HasParseError() || !v1doc.IsObject())
      return r.corrupt("history[" + std::to_string(k) + "] is not a JSON object");
    auto id = r.string(v1doc, "id", true);
    if (id.isError()) return id.error().withContext("history[" + std::to_string(k) + "]");
    if (id->size() != 64 || id->find_first_not_of("0123456789abcdef") != std::string::npos) {
      return r.corrupt("history[" + std::to_string(k) + "] has an invalid layer id");
    }
    messages::Descriptor* d = m.add_layers();
    d->set_media_type(mediatype::kDockerLayerGzip);
    d->set_digest(*blobSum);
    d->set_size(-1);  // schema 1 does not say
    m.add_v1_ids(*id);
    m.add_v1_compatibility(*v1);
  }
  return m;
}

Try<messages::ImageConfig> readConfig(const Reader& r, const Value& doc, bool requireRootfs) {
  messages::ImageConfig c;
  for (const auto& [key, setter] :
       std::initializer_list<std::pair<const char*, void (messages::ImageConfig::*)(const std::string&)>>{
           {"architecture", &messages::ImageConfig::set_architecture},
           {"os", &messages::ImageConfig::set_os},
           {"variant", &messages::ImageConfig::set_variant},
           {"created", &messages::ImageConfig::set_created}}) {
    auto v = r.string(doc, key, false);
    if (v.isError()) return v.error();
    (c.*setter)(*v);
  }
  if (auto it = doc.FindMember("config"); it != doc.MemberEnd() && !it->value.IsNull()) {
    const Value& config = it->value;
    if (!config.IsObject()) return r.corrupt("'config' is not an object");
    if (auto x = r.strings(config, "Env", c.mutable_env()); x.isError()) return x.error();
    if (auto x = r.strings(config, "Entrypoint", c.mutable_entrypoint()); x.isError()) return x.error();
    if (auto x = r.strings(config, "Cmd", c.mutable_cmd()); x.isError()) return x.error();
    if (auto x = r.stringMap(config, "Labels", c.mutable_labels()); x.isError()) return x.error();
    if (auto x = r.keys(config, "ExposedPorts", c.mutable_exposed_ports()); x.isError()) return x.error();
    if (auto x = r.keys(config, "Volumes", c.mutable_volumes()); x.isError()) return x.error();
    auto workingDir = r.string(config, "WorkingDir", false);
    auto user = r.string(config, "User", false);
    auto stopSignal = r.string(config, "StopSignal", false);
    for (auto* v : {&workingDir, &user, &stopSignal}) {
      if (v->isError()) return v->error();
    }
    c.set_working_dir(*workingDir);
    c.set_user(*user);
    c.set_stop_signal(*stopSignal);
  }
  auto rootfs = doc.FindMember("rootfs");
  if (rootfs == doc.MemberEnd()) {
    if (requireRootfs) return r.corrupt("'rootfs' is missing");
  } else {
    if (!rootfs->value.IsObject()) return r.corrupt("'rootfs' is not an object");
    auto type = r.string(rootfs->value, "type", true);
    if (type.isError()) return type.error();
    if (*type != "layers") return r.corrupt("rootfs.type must be 'layers', got '" + *type + "'");
    if (auto x = r.strings(rootfs->value, "diff_ids", c.mutable_diff_ids()); x.isError()) return x.error();
    for (int i = 0; i < c.diff_ids_size(); ++i) {
      if (auto valid = r.digest(c.diff_ids(i), "rootfs.diff_ids[" + std::to_string(i) + "]"); valid.isError()) {
        return valid.error();
      }
    }
  }
  if (auto it = doc.FindMember("history"); it != doc.MemberEnd() && it->value.IsArray()) {
    for (const auto& h : it->value.GetArray()) {
      if (!h.IsObject()) return r.corrupt("a history entry is not an object");
      auto* entry = c.add_history();
      auto created = r.string(h, "created", false);
      auto createdBy = r.string(h, "created_by", false);
      auto comment = r.string(h, "comment", false);
      for (auto* v : {&created, &createdBy, &comment}) {
        if (v->isError()) return v->error();
      }
      entry->set_created(*created);
      entry->set_created_by(*createdBy);
      entry->set_comment(*comment);
      if (auto e = h.FindMember("empty_layer"); e != h.MemberEnd() && e->value.IsBool()) {
        entry->set_empty_layer(e->value.GetBool());
      }
    }
  }
  return c;
}

}  // namespace

namespace {

// RFC 4648 base64url without padding, as JWS writes it.
std::optional<std::string> base64UrlDecode(std::string_view text) {
  // Only the URL alphabet, unpadded (as Go's RawURLEncoding): OpenSSL's
  // decoder would also take '+', '/', '=' and spaces.
  if (!std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_'; }))
    return std::nullopt;
  std::string standard(text);
  std::replace(standard.begin(), standard.end(), '-', '+');
  std::replace(standard.begin(), standard.end(), '_', '/');
  while (standard.size() % 4 != 0) standard += '=';
  auto decoded = base64Decode(standard);
  if (decoded.isError()) return std::nullopt;
  return *decoded;
}

}  // namespace

Try<std::string> manifestPayload(std::string_view body) {
  if (body.find("\"signatures\"") == std::string_view::npos) return std::string(body);
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("signatures") || !doc.HasMember("schemaVersion") ||
      !doc["schemaVersion"].IsInt() || doc["schemaVersion"].GetInt() != 1) {
    return std::string(body);  // not a signed schema 1 manifest; parsing says what it is
  }
  auto bad = [](const std::string& why) {
    return Error(ErrorKind::Corruption, "The signed schema 1 manifest is malformed: " + why);
  };
  const auto& signatures = doc["signatures"];
  if (!signatures.IsArray() || signatures.Empty()) return bad("'signatures' is not a non-empty array");
  // Each signature rebuilds the payload: a few at most (a registry sends
  // one), so that a body of many cannot make it copy gigabytes.
  if (signatures.Size() > 16) return bad("it has more than 16 signatures");
  std::optional<std::string> payload;
  for (const auto& signature : signatures.GetArray()) {
    if (!signature.IsObject() || !signature.HasMember("protected") || !signature["protected"].IsString()) {
      return bad("a signature has no protected header");
    }
    auto header = base64UrlDecode(signature["protected"].GetString());
    if (!header) return bad("a protected header is not base64url");
    rapidjson::Document fields;
    fields.Parse(header->data(), header->size());
    if (fields.HasParseError() || !fields.IsObject() || !fields.HasMember("formatLength") ||
        !fields["formatLength"].IsInt64() || !fields.HasMember("formatTail") || !fields["formatTail"].IsString()) {
      return bad("a protected header lacks formatLength or formatTail");
    }
    const std::int64_t length = fields["formatLength"].GetInt64();
    if (length < 0 || static_cast<std::uint64_t>(length) > body.size()) {
      return bad("formatLength " + std::to_string(length) + " is outside the body's " + std::to_string(body.size()) +
                 " bytes");
    }
    auto tail = base64UrlDecode(fields["formatTail"].GetString());
    if (!tail) return bad("a formatTail is not base64url");
    std::string candidate = std::string(body.substr(0, static_cast<std::size_t>(length))) + *tail;
    if (payload && *payload != candidate) return bad("its signatures disagree on the payload");
    payload = std::move(candidate);
  }
  return *payload;
}

Try<Document> parseManifestDocument(std::string_view body, std::string_view contentType, std::size_t limit) {
  Reader r("manifest");
  rapidjson::Document doc;
  if (auto parsed = r.parse(doc, body, limit); parsed.isError()) return parsed.error();

  auto bodyType = r.string(doc, "mediaType", false);
  if (bodyType.isError()) return bodyType.error();
  const std::string headerType(bareType(contentType));
  if (!bodyType->empty() && isKnownDocumentType(headerType) && headerType != *bodyType) {
    return r.corrupt("Content-Type '" + headerType + "' disagrees with the document's mediaType '" + *bodyType + "'");
  }
  const std::string declared = !bodyType->empty() ? *bodyType : isKnownDocumentType(headerType) ? headerType : "";
  if (!declared.empty() && !isKnownDocumentType(declared)) {
    return r.unsupported("media type '" + declared + "' is not an image manifest or index");
  }

  const bool indexShape = doc.HasMember("manifests");
  const bool manifestShape = doc.HasMember("config") || doc.HasMember("layers");
  const bool schema1Shape = doc.HasMember("fsLayers");
  if (int(indexShape) + int(manifestShape) + int(schema1Shape) > 1) {
    return r.corrupt("it has the fields of more than one kind of document");
  }
  if (indexShape) {
    if (!declared.empty() && !isIndexType(declared)) {
      return r.corrupt("it is an index but declares media type '" + declared + "'");
    }
    auto index = parseIndex(r, doc, declared);
    if (index.isError()) return index.error();
    return Document(*index);
  }
  if (manifestShape) {
    if (!declared.empty() && !isManifestType(declared)) {
      return r.corrupt("it is an image manifest but declares media type '" + declared + "'");
    }
    auto manifest = parseImageManifest(r, doc, declared);
    if (manifest.isError()) return manifest.error();
    return Document(*manifest);
  }
  if (schema1Shape) {
    if (!declared.empty() && !isSchema1Type(declared)) {
      return r.corrupt("it is a schema 1 manifest but declares media type '" + declared + "'");
    }
    auto manifest = parseSchema1(r, doc, declared);
    if (manifest.isError()) return manifest.error();
    return Document(*manifest);
  }
  return r.corrupt("it has neither 'manifests', 'layers' nor 'fsLayers'");
}

Try<messages::ImageConfig> parseImageConfig(std::string_view body, std::size_t limit) {
  Reader r("image config");
  rapidjson::Document doc;
  if (auto parsed = r.parse(doc, body, limit); parsed.isError()) return parsed.error();
  return readConfig(r, doc, /*requireRootfs=*/true);
}

Try<messages::ImageConfig> schema1Config(const messages::Manifest& manifest) {
  if (manifest.kind() != messages::Manifest::DOCKER_SCHEMA1 || manifest.v1_compatibility_size() == 0) {
    return Error(ErrorKind::InvalidArgument, "Failed to read a schema 1 config: not a schema 1 manifest");
  }
  Reader r("schema 1 v1Compatibility");
  rapidjson::Document doc;
  const std::string& top = manifest.v1_compatibility(manifest.v1_compatibility_size() - 1);
  if (auto parsed = r.parse(doc, top, kMaxConfigBytes); parsed.isError()) return parsed.error();
  return readConfig(r, doc, /*requireRootfs=*/false);
}

Try<Compression> layerCompression(std::string_view mediaType) {
  const std::string_view nondistributable = "application/vnd.oci.image.layer.nondistributable.v1.tar";
  if (mediaType == mediatype::kOciLayer || mediaType == mediatype::kDockerLayer || mediaType == nondistributable) {
    return Compression::None;
  }
  if (mediaType == mediatype::kOciLayerGzip || mediaType == mediatype::kDockerLayerGzip ||
      mediaType == mediatype::kDockerForeignLayerGzip || mediaType == std::string(nondistributable) + "+gzip") {
    return Compression::Gzip;
  }
  if (mediaType == mediatype::kOciLayerZstd || mediaType == std::string(nondistributable) + "+zstd") {
    return Compression::Zstd;
  }
  return Error(ErrorKind::Unsupported, "layer media type '" + std::string(mediaType) + "' is not supported");
}

messages::Platform hostPlatform() {
  messages::Platform p;
  p.set_os("linux");
  struct utsname u;
  const std::string machine = ::uname(&u) == 0 ? u.machine : "x86_64";
  if (machine == "x86_64") {
    p.set_architecture("amd64");
  } else if (machine == "aarch64" || machine == "arm64") {
    p.set_architecture("arm64");
    p.set_variant("v8");
  } else if (machine.rfind("armv7", 0) == 0) {
    p.set_architecture("arm");
    p.set_variant("v7");
  } else if (machine.rfind("armv6", 0) == 0) {
    p.set_architecture("arm");
    p.set_variant("v6");
  } else if (machine == "i386" || machine == "i686") {
    p.set_architecture("386");
  } else {
    p.set_architecture(machine);  // ppc64le, s390x, riscv64 are named alike
  }
  return p;
}

std::string toString(const messages::Platform& platform) {
  std::string s = platform.os() + "/" + platform.architecture();
  if (!platform.variant().empty()) s += "/" + platform.variant();
  return s;
}

Try<messages::Descriptor> selectManifest(const messages::Index& index, const messages::Platform& wanted) {
  auto variantOf = [](const messages::Platform& p) {
    return p.architecture() == "arm64" && p.variant().empty() ? std::string("v8") : p.variant();
  };
  std::string available;
  for (const auto& d : index.manifests()) {
    if (!d.has_platform()) continue;
    const auto& p = d.platform();
    available += (available.empty() ? "" : ", ") + toString(p);
    if (p.os() != wanted.os() || p.architecture() != wanted.architecture()) continue;
    if (!wanted.variant().empty() && variantOf(p) != variantOf(wanted)) continue;
    return d;
  }
  return Error(ErrorKind::NotFound, "No image for platform " + toString(wanted) +
                                        " in the index (it has: " + (available.empty() ? "none" : available) + ")");
}

}  // namespace prov::fetcher
