#include "cmd/output.hpp"
#include "cmd/progress.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <sstream>

#include "fetcher/reference.hpp"

namespace prov::cmd {

namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void string(Writer& w, const char* key, const std::string& value) {
  w.Key(key);
  w.String(value.c_str(), static_cast<rapidjson::SizeType>(value.size()));
}

template <typename List>
void strings(Writer& w, const char* key, const List& values) {
  w.Key(key);
  w.StartArray();
  for (const auto& v : values) w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
  w.EndArray();
}

unsigned layerCount(const messages::StoredImage& i) {
  return static_cast<unsigned>(i.has_appc() ? i.appc().image_ids_size() : i.layer_ids_size());
}

void image(Writer& w, const messages::StoredImage& i) {
  w.Key("image");
  w.StartObject();
  string(w, "reference", i.reference().repository().empty() ? i.key() : fetcher::toString(i.reference()));
  string(w, "key", i.key());
  string(w, "manifest_digest", imageDigest(i));
  string(w, "config_digest", i.config_digest());
  w.EndObject();
}

void config(Writer& w, const messages::ImageConfig& c) {
  w.Key("config");
  w.StartObject();
  strings(w, "env", c.env());
  strings(w, "entrypoint", c.entrypoint());
  strings(w, "cmd", c.cmd());
  string(w, "working_dir", c.working_dir());
  string(w, "user", c.user());
  w.EndObject();
}

}  // namespace

std::string imageDigest(const messages::StoredImage& i) { return i.has_appc() ? i.appc().id() : i.manifest_digest(); }

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      static const char* const kHex = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::vector<std::string> splitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string imageJson(const messages::StoredImage& i) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  image(w, i);
  w.Key("layers");
  w.Uint(layerCount(i));
  config(w, i.config());
  w.EndObject();
  return buffer.GetString();
}

std::string provisionJson(const provisioner::ProvisionInfo& info, const std::string& bundle) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  string(w, "rootfs", info.rootfs);
  if (!bundle.empty()) string(w, "bundle", bundle);
  string(w, "backend", info.backend);
  if (info.image) {
    image(w, *info.image);
    config(w, info.image->config());
  }
  strings(w, "ephemeral_volumes", info.ephemeralVolumes);
  w.EndObject();
  return buffer.GetString();
}

std::string containersText(const std::vector<provisioner::ContainerInfo>& containers, bool json) {
  if (!json) {
    std::string out;
    for (const auto& c : containers) {
      out += c.id + "  " + std::to_string(c.rootfses.size()) + (c.rootfses.size() == 1 ? " rootfs" : " rootfses");
      for (const auto& r : c.rootfses) out += "  " + r.backend() + ":" + r.id();
      out += "\n";
    }
    return out;
  }
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartArray();
  for (const auto& c : containers) {
    w.StartObject();
    string(w, "id", c.id);
    w.Key("rootfses");
    w.StartArray();
    for (const auto& r : c.rootfses) {
      w.StartObject();
      string(w, "id", r.id());
      string(w, "backend", r.backend());
      string(w, "image", r.image_key());
      if (!r.bundle().empty()) string(w, "bundle", r.bundle());
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  return std::string(buffer.GetString()) + "\n";
}

std::string imagesText(const std::vector<provisioner::ImageUsage>& images, bool json) {
  if (!json) {
    std::string out;
    for (const auto& [i, bytes, ownBytes, inUse, verified] : images) {
      const auto layers = layerCount(i);
      out += i.key() + "  " + imageDigest(i) + "  " + humanBytes(bytes) + "  " + std::to_string(layers) +
             (layers == 1 ? " layer\n" : " layers\n");
    }
    return out;
  }
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartArray();
  for (const auto& [i, bytes, ownBytes, inUse, verified] : images) {
    w.StartObject();
    image(w, i);
    w.Key("layers");
    w.Uint(layerCount(i));
    w.Key("size_bytes");
    w.Int64(bytes);
    w.Key("own_bytes");
    w.Int64(ownBytes);
    w.Key("pulled_at");
    w.Int64(i.pulled_at());
    w.Key("last_used_at");
    w.Int64(i.last_used_at() > 0 ? i.last_used_at() : i.pulled_at());
    w.Key("in_use");
    w.Bool(inUse);
    w.Key("verified");
    if (!verified) {
      w.Null();
    } else {
      w.StartObject();
      string(w, "policy", verified->policyFile);
      string(w, "scope", verified->scope);
      strings(w, "by", verified->by);
      strings(w, "signatures", verified->signatures);
      w.Key("at");
      w.Int64(verified->at);
      w.EndObject();
    }
    w.EndObject();
  }
  w.EndArray();
  return std::string(buffer.GetString()) + "\n";
}

namespace {

// "KEY  ok|damaged|recorded  N layers, E entries, B read", then each layer
// that is not whole and its damaged paths.
std::string checkText(const provisioner::ImageCheck& check) {
  std::uint64_t entries = 0, bytes = 0;
  bool adopted = false;
  for (const auto& layer : check.layers) {
    entries += layer.entries;
    bytes += layer.bytes;
    adopted = adopted || layer.adopted;
  }
  const char* state = !check.ok() ? "damaged" : adopted ? "recorded" : "ok";
  std::string out = check.image.key() + "  " + state + "  " + std::to_string(check.layers.size()) +
                    (check.layers.size() == 1 ? " layer, " : " layers, ") + std::to_string(entries) + " entries, " +
                    humanBytes(static_cast<std::int64_t>(bytes)) + " read\n";
  for (const auto& layer : check.layers) {
    if (layer.ok()) continue;
    out += "  " + printable(layer.rootfs) + (layer.error.empty() ? "" : ": " + printable(layer.error)) + "\n";
    for (const auto& damage : layer.damage) out += "    " + printable(damage.path + ": " + damage.what) + "\n";
  }
  return out;
}

// "ok" and "layers" of one check.
void checkJson(Writer& w, const provisioner::ImageCheck& check) {
  w.Key("ok");
  w.Bool(check.ok());
  w.Key("layers");
  w.StartArray();
  for (const auto& layer : check.layers) {
    w.StartObject();
    string(w, "path", layer.rootfs);
    w.Key("ok");
    w.Bool(layer.ok());
    w.Key("adopted");
    w.Bool(layer.adopted);
    w.Key("gone");
    w.Bool(layer.gone);
    w.Key("entries");
    w.Uint64(layer.entries);
    w.Key("bytes_read");
    w.Uint64(layer.bytes);
    w.Key("damage");
    w.StartArray();
    for (const auto& damage : layer.damage) {
      w.StartObject();
      string(w, "path", damage.path);
      string(w, "what", damage.what);
      w.EndObject();
    }
    w.EndArray();
    if (!layer.error.empty()) string(w, "error", layer.error);
    w.EndObject();
  }
  w.EndArray();
}

}  // namespace

std::string verifyText(const std::vector<provisioner::ImageCheck>& checks, bool json) {
  if (!json) {
    std::string out;
    for (const auto& check : checks) out += checkText(check);
    return out;
  }
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartArray();
  for (const auto& check : checks) {
    w.StartObject();
    image(w, check.image);
    checkJson(w, check);
    w.EndObject();
  }
  w.EndArray();
  return std::string(buffer.GetString()) + "\n";
}

std::string repairText(const std::vector<provisioner::ImageRepair>& repairs, bool json) {
  if (!json) {
    std::string out;
    for (const auto& repair : repairs) {
      out += checkText(repair.found);
      for (const auto& layer : repair.inUse) {
        out += "  kept for the containers that use it, fetched again for new ones: " + printable(layer) + "\n";
      }
      if (!repair.error.empty()) out += "  " + printable(repair.error) + "\n";
      const std::size_t fetched = repair.refetched.size() + repair.inUse.size();
      if (fetched > 0 && repair.after) {
        out += "  fetched again: " + std::to_string(fetched) + (fetched == 1 ? " layer; now " : " layers; now ") +
               checkText(*repair.after);
      }
    }
    return out;
  }
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartArray();
  for (const auto& repair : repairs) {
    w.StartObject();
    image(w, repair.found.image);
    w.Key("repaired");
    w.Bool(repair.repaired());
    strings(w, "refetched", repair.refetched);
    strings(w, "in_use", repair.inUse);
    if (!repair.error.empty()) string(w, "error", repair.error);
    w.Key("found");
    w.StartObject();
    checkJson(w, repair.found);
    w.EndObject();
    if (repair.after) {
      w.Key("after");
      w.StartObject();
      checkJson(w, *repair.after);
      w.EndObject();
    }
    w.EndObject();
  }
  w.EndArray();
  return std::string(buffer.GetString()) + "\n";
}

}  // namespace prov::cmd
