// Command-line shaped inputs: container ids, image names, the image GC config.

#include <algorithm>
#include <rapidjson/document.h>

#include <sstream>

#include "actors/fs.hpp"
#include "fetcher/reference.hpp"
#include "provisioner/provisioner.hpp"

namespace prov::provisioner {

Try<Nothing> validateContainerId(const std::string& id) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorKind::InvalidArgument, "Invalid container id '" + id + "': " + why);
  };
  if (id.empty()) return bad("it is empty");
  std::size_t start = 0;
  while (start <= id.size()) {
    const std::size_t slash = id.find('/', start);
    const std::string part = id.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == "..") return bad("each part must be a name");
    if (part.size() > 128) return bad("a part is longer than 128 characters");
    for (char c : part) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
        return bad(std::string("'") + c + "' is not allowed (letters, digits, '_', '-', '.')");
      }
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return Nothing{};
}

Try<messages::Image> parseImage(const std::string& text) {
  messages::Image image;
  auto docker = [&](std::string_view ref) -> Try<messages::Image> {
    auto parsed = fetcher::parseImageReference(ref);
    if (parsed.isError()) return parsed.error();
    image.set_type(messages::Image::DOCKER);
    *image.mutable_reference() = *parsed;
    return image;
  };
  if (text.starts_with("docker://")) return docker(std::string_view(text).substr(9));
  if (text.starts_with("oci:")) {
    std::string rest = text.substr(4);
    // oci:DIR[:TAG]: a tag never holds '/', a directory may hold ':'.
    const auto colon = rest.rfind(':');
    if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
      image.set_layout_tag(rest.substr(colon + 1));
      rest = rest.substr(0, colon);
    }
    if (rest.empty()) return Error(ErrorKind::InvalidArgument, "Invalid image '" + text + "': no directory");
    image.set_type(messages::Image::OCI_LAYOUT);
    image.set_path(rest);
    return image;
  }
  if (text.starts_with("docker-archive:")) {
    std::string rest = text.substr(15);
    if (rest.empty()) return Error(ErrorKind::InvalidArgument, "Invalid image '" + text + "': no file");
    image.set_type(messages::Image::DOCKER_ARCHIVE);
    image.set_path(rest);
    return image;
  }
  if (text.starts_with("appc:")) {
    std::string rest = text.substr(5);
    image.set_type(messages::Image::APPC);
    std::stringstream parts(rest);
    std::string part;
    bool first = true;
    while (std::getline(parts, part, ',')) {
      if (first) {
        image.mutable_appc()->set_name(part);
        first = false;
        continue;
      }
      const auto eq = part.find('=');
      if (eq == std::string::npos || eq == 0) {
        return Error(ErrorKind::InvalidArgument,
                     "Invalid image '" + text + "': label '" + part + "' is not LABEL=VALUE");
      }
      (*image.mutable_appc()->mutable_labels())[part.substr(0, eq)] = part.substr(eq + 1);
    }
    if (image.appc().name().empty()) return Error(ErrorKind::InvalidArgument, "Invalid image '" + text + "': no name");
    return image;
  }
  return docker(text);
}

Try<ImageGcConfig> parseImageGcConfig(const std::string& jsonOrFile) {
  std::string json = jsonOrFile;
  if (!json.empty() && json.front() != '{') {
    auto content = actors::fs::readFile(jsonOrFile);
    if (content.isError()) return Error(ErrorKind::NotFound, "Failed to read the image GC config '" + jsonOrFile + "'");
    json = std::move(*content);
  }
  auto bad = [](const std::string& why) {
    return Error(ErrorKind::InvalidArgument, "Invalid --image_gc_config: " + why);
  };
  rapidjson::Document doc;
  doc.Parse(json.c_str(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return bad("not a JSON object");
  ImageGcConfig config;
  if (doc.HasMember("image_disk_headroom")) {
    const auto& v = doc["image_disk_headroom"];
    if (!v.IsNumber() || v.GetDouble() < 0 || v.GetDouble() > 1) return bad("image_disk_headroom must be in [0, 1]");
    config.imageDiskHeadroom = v.GetDouble();
  }
  if (doc.HasMember("image_disk_watch_interval")) {
    const auto& v = doc["image_disk_watch_interval"];
    if (!v.IsObject() || !v.HasMember("nanoseconds") || !v["nanoseconds"].IsInt64() ||
        v["nanoseconds"].GetInt64() <= 0) {
      return bad("image_disk_watch_interval must be {\"nanoseconds\": N} with N > 0");
    }
    config.imageDiskWatchInterval = std::chrono::nanoseconds(v["nanoseconds"].GetInt64());
  }
  // The kubelet's policy.
  auto percent = [&](const char* field, double& into) -> Try<bool> {
    if (!doc.HasMember(field)) return false;
    const auto& v = doc[field];
    if (!v.IsNumber() || v.GetDouble() < 0 || v.GetDouble() > 100) {
      return bad(std::string(field) + " must be a percentage in [0, 100]");
    }
    into = v.GetDouble();
    return true;
  };
  auto high = percent("image_gc_high_threshold_percent", config.highThresholdPercent);
  if (high.isError()) return high.error();
  auto low = percent("image_gc_low_threshold_percent", config.lowThresholdPercent);
  if (low.isError()) return low.error();
  if (*high || *low) {
    if (!*high) config.highThresholdPercent = 85;
    if (!*low) config.lowThresholdPercent = std::min(80.0, config.highThresholdPercent);
    if (config.highThresholdPercent <= 0) return bad("image_gc_high_threshold_percent must be above 0");
    if (config.lowThresholdPercent > config.highThresholdPercent) {
      return bad("image_gc_low_threshold_percent (" + std::to_string(config.lowThresholdPercent) +
                 ") must not be above image_gc_high_threshold_percent (" + std::to_string(config.highThresholdPercent) +
                 ")");
    }
  }
  if (doc.HasMember("image_store_max_bytes")) {
    const auto& v = doc["image_store_max_bytes"];
    if (!v.IsInt64() || v.GetInt64() <= 0) {
      return bad("image_store_max_bytes must be a number of bytes above 0 and below 2^63");
    }
    config.maxStoreBytes = static_cast<std::uint64_t>(v.GetInt64());
  }
  if (doc.HasMember("image_minimum_age")) {
    const auto& v = doc["image_minimum_age"];
    if (!v.IsObject() || !v.HasMember("nanoseconds") || !v["nanoseconds"].IsInt64() ||
        v["nanoseconds"].GetInt64() < 0) {
      return bad("image_minimum_age must be {\"nanoseconds\": N} with N >= 0");
    }
    config.minimumAge = std::chrono::nanoseconds(v["nanoseconds"].GetInt64());
  }
  if (config.leastRecentlyUsed() && doc.HasMember("image_disk_headroom")) {
    return bad(
        "image_disk_headroom (every unused image below it) and the thresholds or image_store_max_bytes "
        "(least recently used first) are two policies; give one");
  }
  if (doc.HasMember("excluded_images")) {
    const auto& v = doc["excluded_images"];
    if (!v.IsArray()) return bad("excluded_images must be an array");
    for (const auto& item : v.GetArray()) {
      std::string name;
      if (item.IsString()) {
        name = item.GetString();
      } else if (item.IsObject() && item.HasMember("docker") && item["docker"].IsObject() &&
                 item["docker"].HasMember("name") && item["docker"]["name"].IsString()) {
        name = item["docker"]["name"].GetString();  // Mesos's Image message as JSON
      } else {
        return bad("each of excluded_images must be an image name");
      }
      auto image = parseImage(name);
      if (image.isError()) return bad(image.error().message);
      config.excludedImages.push_back(*image);
    }
  }
  return config;
}

}  // namespace prov::provisioner
