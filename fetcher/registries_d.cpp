#include "fetcher/registries_d.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <yaml-cpp/yaml.h>

#include "actors/fs.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/policy.hpp"

namespace prov::fetcher {

namespace {

Error bad(const std::string& file, const std::string& why) {
  return Error(ErrorKind::InvalidArgument, "Invalid registries.d file '" + file + "': " + why);
}

// What a namespace entry gives.
struct Entry {
  std::string lookaside;
  std::optional<bool> attachments;
};

Try<Entry> entryOf(const YAML::Node& node, const std::string& file, const std::string& where) {
  Entry entry;
  if (node.IsNull()) return entry;
  if (!node.IsMap()) return bad(file, where + " is not a mapping");
  for (const char* key : {"lookaside", "sigstore"}) {
    const YAML::Node value = node[key];
    if (!value || value.IsNull()) continue;
    if (!value.IsScalar()) return bad(file, where + "." + key + " is not a URL");
    const std::string url = value.as<std::string>();
    if (!url.empty()) {
      entry.lookaside = url;
      break;
    }
  }
  if (const YAML::Node value = node["use-sigstore-attachments"]; value && !value.IsNull()) {
    bool on = false;
    if (!value.IsScalar() || !YAML::convert<bool>::decode(value, on)) {
      return bad(file, where + ".use-sigstore-attachments is not true or false");
    }
    entry.attachments = on;
  }
  return entry;
}

}  // namespace

Try<RegistriesD> RegistriesD::load(const std::string& dir) {
  RegistriesD config;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    if (std::filesystem::exists(dir, ec)) {
      return Error(ErrorKind::InvalidArgument, "The registries.d '" + dir + "' is not a directory");
    }
    config.digest_ = sha256Digest("");
    return config;
  }
  std::vector<std::string> files;
  for (const auto& name : actors::fs::listDirectory(dir)) {
    if (name.size() > 5 && name.ends_with(".yaml")) files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  std::string everything;
  std::map<std::string, std::string> scopeFile;
  std::string defaultFile;
  for (const auto& name : files) {
    const std::string file = dir + "/" + name;
    auto text = actors::fs::readFile(file);
    if (text.isError()) return bad(file, text.error().message);
    everything += name + "\n" + std::to_string(text->size()) + "\n" + *text;
    YAML::Node root;
    try {
      root = YAML::Load(*text);
    } catch (const YAML::Exception& e) {
      return bad(file, std::string("not YAML (") + e.what() + ")");
    }
    if (root.IsNull()) continue;
    if (!root.IsMap()) return bad(file, "the document is not a mapping");
    try {
      if (const YAML::Node fallback = root["default-docker"]; fallback && !fallback.IsNull()) {
        if (!defaultFile.empty()) return bad(file, "default-docker is also given in '" + defaultFile + "'");
        defaultFile = file;
        auto entry = entryOf(fallback, file, "default-docker");
        if (entry.isError()) return entry.error();
        config.defaultDocker_ = {entry->lookaside, entry->attachments};
      }
      if (const YAML::Node docker = root["docker"]; docker && !docker.IsNull()) {
        if (!docker.IsMap()) return bad(file, "docker is not a mapping of scopes");
        for (const auto& entry : docker) {
          const std::string scope = entry.first.as<std::string>();
          if (auto [at, fresh] = scopeFile.emplace(scope, file); !fresh) {
            return bad(file, "the scope \"" + scope + "\" is also given in '" + at->second + "'");
          }
          auto given = entryOf(entry.second, file, "docker[\"" + scope + "\"]");
          if (given.isError()) return given.error();
          config.docker_[scope] = {given->lookaside, given->attachments};
        }
      }
    } catch (const YAML::Exception& e) {
      return bad(file, e.what());
    }
  }
  config.digest_ = sha256Digest(everything);
  return config;
}

std::string RegistriesD::lookasideFor(const messages::ImageReference& reference) const {
  for (const auto& scope : policy::dockerScopes(reference)) {
    auto found = docker_.find(scope);
    if (found != docker_.end() && !found->second.lookaside.empty()) return found->second.lookaside;
  }
  if (!defaultDocker_.lookaside.empty()) return defaultDocker_.lookaside;
  if (::geteuid() == 0) return "file:///var/lib/containers/sigstore";
  const char* home = std::getenv("HOME");
  return "file://" + std::string(home != nullptr ? home : "") + "/.local/share/containers/sigstore";
}

bool RegistriesD::useSigstoreAttachments(const messages::ImageReference& reference) const {
  for (const auto& scope : policy::dockerScopes(reference)) {
    auto found = docker_.find(scope);
    if (found != docker_.end() && found->second.attachments) return *found->second.attachments;
  }
  return defaultDocker_.attachments.value_or(false);
}

std::string RegistriesD::signatureUrl(const std::string& base, const messages::ImageReference& reference,
                                      const std::string& manifestDigest, int n) {
  std::string url = base;
  while (!url.empty() && url.back() == '/') url.pop_back();
  std::string digest = manifestDigest;
  if (auto colon = digest.find(':'); colon != std::string::npos) digest[colon] = '=';
  return url + "/" + reference.repository() + "@" + digest + "/signature-" + std::to_string(n);
}

}  // namespace prov::fetcher
