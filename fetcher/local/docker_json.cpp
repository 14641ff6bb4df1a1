#include <algorithm>
#include <iterator>
#include <map>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "fetcher/json.hpp"
#include "fetcher/local/docker.hpp"
#include "fetcher/local/util.hpp"
#include "fetcher/manifest.hpp"

namespace prov::fetcher::local {

namespace {

using rapidjson::Value;

Error corrupt(const std::string& what, const std::string& file, const std::string& why) {
  return Error(ErrorKind::Corruption, what + ": '" + file + "' " + why);
}

Try<Nothing> parse(rapidjson::Document& doc, const std::string& body, const std::string& what,
                   const std::string& file) {
  return json::parse(doc, body, [&](const std::string& why) { return corrupt(what, file, "is " + why); });
}

// An array of strings in manifest.json (absent or null: empty when `optional`).
Try<std::vector<std::string>> strings(const Value& object, const char* key, bool optional, const std::string& what,
                                      const std::string& where) {
  return json::strings(
      object, key, !optional,
      [&](const std::string& why) { return corrupt(what, "manifest.json", where + ": " + why); },
      static_cast<std::size_t>(kMaxEntries));
}

Try<std::string> entryPath(const std::string& path, const std::string& what, const std::string& where) {
  auto normal = normalizeRelative(path);
  if (normal.isError()) return corrupt(what, "manifest.json", where + ": " + normal.error().message);
  return normal;
}

void writeDescriptor(rapidjson::Writer<rapidjson::StringBuffer>& w, const messages::Descriptor& d) {
  w.StartObject();
  w.Key("mediaType");
  w.String(d.media_type().c_str());
  w.Key("digest");
  w.String(d.digest().c_str());
  w.Key("size");
  w.Int64(d.size());
  if (!d.annotations().empty()) {
    // Sorted, so the same archive always gives the same manifest.
    std::map<std::string, std::string> sorted(d.annotations().begin(), d.annotations().end());
    w.Key("annotations");
    w.StartObject();
    for (const auto& [k, v] : sorted) {
      w.Key(k.c_str(), static_cast<rapidjson::SizeType>(k.size()));
      w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
    }
    w.EndObject();
  }
  w.EndObject();
}

}  // namespace

Try<std::vector<ArchiveImage>> parseManifestJson(const std::string& body, const std::string& what) {
  rapidjson::Document doc;
  if (auto parsed = parse(doc, body, what, "manifest.json"); parsed.isError()) return parsed.error();
  if (!doc.IsArray()) return corrupt(what, "manifest.json", "is not a JSON array");
  if (doc.Size() > static_cast<unsigned>(kMaxEntries)) return corrupt(what, "manifest.json", "lists too many images");
  std::vector<ArchiveImage> images;
  for (unsigned i = 0; i < doc.Size(); ++i) {
    const std::string where = "image " + std::to_string(i);
    const Value& item = doc[i];
    if (!item.IsObject()) return corrupt(what, "manifest.json", where + " is not an object");
    ArchiveImage image;
    auto config = item.FindMember("Config");
    if (config == item.MemberEnd() || !config->value.IsString()) {
      return corrupt(what, "manifest.json", where + ": 'Config' is missing or not a string");
    }
    auto configPath = entryPath(config->value.GetString(), what, where + ": Config");
    if (configPath.isError()) return configPath.error();
    image.config = *configPath;
    auto tags = strings(item, "RepoTags", true, what, where);
    if (tags.isError()) return tags.error();
    image.repoTags = std::move(*tags);
    auto layers = strings(item, "Layers", false, what, where);
    if (layers.isError()) return layers.error();
    for (std::size_t j = 0; j < layers->size(); ++j) {
      auto layer = entryPath((*layers)[j], what, where + ": Layers[" + std::to_string(j) + "]");
      if (layer.isError()) return layer.error();
      image.layers.push_back(*layer);
    }
    images.push_back(std::move(image));
  }
  return images;
}

bool validLayerId(const std::string& id) {
  return !id.empty() && id.size() <= 255 && id != "." && id != ".." && id.find('/') == std::string::npos &&
         id.find('\0') == std::string::npos;
}

Try<std::vector<ArchiveImage>> parseRepositories(const std::string& body, const std::string& what) {
  rapidjson::Document doc;
  if (auto parsed = parse(doc, body, what, "repositories"); parsed.isError()) return parsed.error();
  if (!doc.IsObject()) return corrupt(what, "repositories", "is not a JSON object");
  std::vector<ArchiveImage> images;
  for (auto repo = doc.MemberBegin(); repo != doc.MemberEnd(); ++repo) {
    const std::string name = repo->name.GetString();
    if (!repo->value.IsObject()) return corrupt(what, "repositories", "has a non-object value for '" + name + "'");
    for (auto tag = repo->value.MemberBegin(); tag != repo->value.MemberEnd(); ++tag) {
      if (!tag->value.IsString() || !validLayerId(tag->value.GetString())) {
        return corrupt(what, "repositories",
                       "has an invalid layer id for '" + name + ":" + tag->name.GetString() + "'");
      }
      const std::string id = tag->value.GetString();
      auto it = std::find_if(images.begin(), images.end(), [&](const ArchiveImage& i) { return i.topId == id; });
      if (it == images.end()) {
        if (images.size() >= static_cast<std::size_t>(kMaxEntries)) {
          return corrupt(what, "repositories", "lists too many images");
        }
        images.push_back(ArchiveImage{});
        it = std::prev(images.end());
        it->topId = id;
      }
      it->repoTags.push_back(name + ":" + tag->name.GetString());
    }
  }
  return images;
}

Try<std::string> v1Parent(const std::string& json, const std::string& name, const std::string& what) {
  rapidjson::Document doc;
  if (auto parsed = parse(doc, json, what, name); parsed.isError()) return parsed.error();
  if (!doc.IsObject()) return corrupt(what, name, "is not a JSON object");
  auto parent = doc.FindMember("parent");
  if (parent == doc.MemberEnd() || parent->value.IsNull()) return std::string();
  if (!parent->value.IsString()) return corrupt(what, name, "has a 'parent' that is not a string");
  std::string id(parent->value.GetString(), parent->value.GetStringLength());
  if (!id.empty() && !validLayerId(id)) return corrupt(what, name, "has an invalid 'parent'");
  return id;
}

Try<std::string> configFromV1(const std::string& json, const std::vector<std::string>& diffIds,
                              const std::string& what) {
  rapidjson::Document doc;
  if (auto parsed = parse(doc, json, what, "the top layer's json"); parsed.isError()) return parsed.error();
  if (!doc.IsObject()) return corrupt(what, "the top layer's json", "is not a JSON object");
  for (const char* key : {"id", "parent", "Size", "parent_id", "layer_id", "throwaway", "rootfs"}) {
    while (doc.RemoveMember(key)) {
    }
  }
  auto& alloc = doc.GetAllocator();
  Value rootfs(rapidjson::kObjectType);
  rootfs.AddMember("type", "layers", alloc);
  Value ids(rapidjson::kArrayType);
  for (const auto& id : diffIds) ids.PushBack(Value(id.c_str(), alloc), alloc);
  rootfs.AddMember("diff_ids", ids, alloc);
  doc.AddMember("rootfs", rootfs, alloc);
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  doc.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string synthesizeManifest(const messages::Descriptor& config, const std::vector<messages::Descriptor>& layers) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("schemaVersion");
  w.Int(2);
  w.Key("mediaType");
  w.String(mediatype::kOciManifest);
  w.Key("config");
  writeDescriptor(w, config);
  w.Key("layers");
  w.StartArray();
  for (const auto& layer : layers) writeDescriptor(w, layer);
  w.EndArray();
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace prov::fetcher::local
