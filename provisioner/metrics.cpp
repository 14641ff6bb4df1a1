#include "provisioner/metrics.hpp"

#include <cmath>
#include <cstdio>

namespace prov::provisioner {

namespace {

std::string promName(const std::string& name) {
  std::string out;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    out += (letter || (digit && i > 0)) ? c : '_';
  }
  return out;
}

std::string number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.17g", value);
  return buffer;
}

// Counters count; the rest (sizes, last durations, the number of
// containers) go up and down.
bool isCounter(const std::string& name) {
  const bool gauge = name.size() >= 3 && name.compare(name.size() - 3, 3, "_ms") == 0;
  return !gauge && name != "provisioner/containers";
}

}  // namespace

void PullDurations::observe(std::int64_t imageBytes, double seconds) {
  Series& s = series_[sizeBucket(imageBytes)];
  ++s.count;
  s.sum += seconds;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    if (seconds <= kBounds[i]) {
      ++s.counts[i];
      break;
    }
  }
}

std::string PullDurations::sizeBucket(std::int64_t imageBytes) {
  constexpr std::int64_t MB = 1000 * 1000, GB = 1000 * MB;
  struct Bucket {
    std::int64_t upTo;
    const char* label;
  };
  static constexpr Bucket kSizes[] = {{10 * MB, "0-10MB"},    {100 * MB, "10MB-100MB"}, {500 * MB, "100MB-500MB"},
                                      {1 * GB, "500MB-1GB"},  {5 * GB, "1GB-5GB"},      {10 * GB, "5GB-10GB"},
                                      {20 * GB, "10GB-20GB"}, {50 * GB, "20GB-50GB"},   {100 * GB, "50GB-100GB"}};
  for (const auto& b : kSizes) {
    if (imageBytes <= b.upTo) return b.label;
  }
  return "100GB+";
}

std::string prometheusText(const std::map<std::string, double>& values, const PullDurations& pulls) {
  std::string out;
  for (const auto& [name, value] : values) {
    const std::string n = promName(name);
    out += "# TYPE " + n + (isCounter(name) ? " counter\n" : " gauge\n");
    out += n + " " + number(value) + "\n";
  }
  const std::string h = "provisioner_image_pull_duration_seconds";
  out += "# HELP " + h + " Duration of image pulls that fetched layers, by image size (as kubelet's).\n";
  out += "# TYPE " + h + " histogram\n";
  for (const auto& [size, s] : pulls.series()) {
    const std::string label = "image_size_in_bytes=\"" + size + "\"";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < PullDurations::kBounds.size(); ++i) {
      cumulative += s.counts[i];
      out += h + "_bucket{" + label + ",le=\"" + number(PullDurations::kBounds[i]) + "\"} " +
             std::to_string(cumulative) + "\n";
    }
    out += h + "_bucket{" + label + ",le=\"+Inf\"} " + std::to_string(s.count) + "\n";
    out += h + "_sum{" + label + "} " + number(s.sum) + "\n";
    out += h + "_count{" + label + "} " + std::to_string(s.count) + "\n";
  }
  return out;
}

}  // namespace prov::provisioner
