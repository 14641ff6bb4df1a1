#include "bench/pull_report.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>

#include "bench/options.hpp"

namespace prov::bench::pull {

namespace {

const char* const kPeerKeys[] = {"skopeo_umoci", "containerd"};

const ToolResult* find(const WorkloadResult& r, const std::string& key) {
  for (const auto& t : r.tools) {
    if (t.key == key) return &t;
  }
  return nullptr;
}

std::optional<double> medianOf(const ToolResult* t) {
  if (!t || !t->valid()) return std::nullopt;
  return median(t->seconds);
}

double maxOf(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }
double minOf(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

// The fastest valid peer: its result and median.
std::optional<std::pair<const ToolResult*, double>> bestPeer(const WorkloadResult& r) {
  std::optional<std::pair<const ToolResult*, double>> best;
  for (const char* key : kPeerKeys) {
    const ToolResult* t = find(r, key);
    if (auto m = medianOf(t); m && (!best || *m < best->second)) best = std::make_pair(t, *m);
  }
  return best;
}

std::optional<double> oursPeakRss(const WorkloadResult& r) {
  const ToolResult* ours = find(r, "ours");
  if (!ours || !ours->valid()) return std::nullopt;
  const auto it = ours->peakRssMib.find("ours");
  if (it == ours->peakRssMib.end() || it->second.empty()) return std::nullopt;
  return maxOf(it->second);
}

std::string number(std::optional<double> v, const char* format) {
  if (!v) return "null";
  char text[32];
  std::snprintf(text, sizeof text, format, *v);
  return text;
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (const unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace

void printTables(const std::vector<WorkloadResult>& results) {
  for (const auto& r : results) {
    std::printf("\n%s: %s\n  (before its runs, other work kept %.2f of %d cores busy)\n", r.workload.name.c_str(),
                r.description.c_str(), r.busyCores, r.cores);
    std::printf("  %-14s %9s %9s %9s   %s\n", "tool", "median", "min", "max", "peak RSS (largest, MiB)");
    for (const auto& t : r.tools) {
      if (!t.valid()) {
        std::printf("  %-14s FAILED: %s\n", t.name.c_str(), t.error.c_str());
        continue;
      }
      std::string rss;
      for (const auto& [process, values] : t.peakRssMib) {
        char part[64];
        std::snprintf(part, sizeof part, "%s%s %.1f", rss.empty() ? "" : ", ", process.c_str(), maxOf(values));
        rss += part;
      }
      std::printf("  %-14s %7.2f s %7.2f s %7.2f s   %s\n", t.name.c_str(), median(t.seconds), minOf(t.seconds),
                  maxOf(t.seconds), rss.c_str());
    }
    const auto ours = medianOf(find(r, "ours"));
    const auto best = bestPeer(r);
    if (ours && best) {
      std::printf("  speedup vs best peer (%s): %.2fx\n", best->first->name.c_str(), best->second / *ours);
    }
    if (const auto floor = medianOf(find(r, "tar_sync")); ours && floor) {
      std::printf("  ours / floor (tar -x + sync): %.2f\n", *ours / *floor);
    }
  }
  std::printf("\n");
}

std::string resultsJson(const std::vector<WorkloadResult>& results, int runs) {
  std::string json = "{";
  for (const auto& r : results) {
    const auto ours = medianOf(find(r, "ours"));
    const auto best = bestPeer(r);
    std::optional<double> speedup;
    if (ours && best) speedup = best->second / *ours;
    std::string o = "\"ours_s\":" + number(ours, "%.3f");
    for (const char* key : kPeerKeys) o += ",\"" + std::string(key) + "_s\":" + number(medianOf(find(r, key)), "%.3f");
    o += ",\"speedup_vs_best_peer\":" + number(speedup, "%.2f");
    if (const ToolResult* floor = find(r, "tar_sync")) {
      const auto f = medianOf(floor);
      o += ",\"tar_sync_s\":" + number(f, "%.3f");
      o += ",\"ours_vs_floor\":" + number(ours && f ? std::optional<double>(*ours / *f) : std::nullopt, "%.2f");
    }
    o += ",\"peak_rss_mib\":" + number(oursPeakRss(r), "%.1f");
    o += ",\"best_peer\":" + (best ? jsonString(best->first->name) : std::string("null"));
    o += ",\"runs\":" + std::to_string(runs) + ",\"busy_cores_before\":" + number(r.busyCores, "%.2f");
    std::string errors, peerRss;
    for (const auto& t : r.tools) {
      if (t.valid()) {
        o += ",\"" + t.key + "_min_s\":" + number(minOf(t.seconds), "%.3f") + ",\"" + t.key +
             "_max_s\":" + number(maxOf(t.seconds), "%.3f");
        if (t.key == "ours") continue;
        for (const auto& [process, values] : t.peakRssMib) {
          peerRss += (peerRss.empty() ? "" : ",") + jsonString(process) + ":" + number(maxOf(values), "%.1f");
        }
      } else if (!t.error.empty()) {
        errors += (errors.empty() ? "" : ",") + jsonString(t.key) + ":" + jsonString(t.error);
      }
    }
    if (!peerRss.empty()) o += ",\"peer_peak_rss_mib\":{" + peerRss + "}";
    if (!errors.empty()) o += ",\"errors\":{" + errors + "}";
    json += (json.size() > 1 ? "," : "") + jsonString(r.workload.key) + ":{" + o + "}";
  }
  return json + "}";
}

}  // namespace prov::bench::pull
