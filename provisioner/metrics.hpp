#pragma once

// The provisioner's metrics in the Prometheus text exposition format
// (version 0.0.4), for `provisioner metrics` and an agent's /metrics.
//
// Provisioner::metrics() names keep Mesos's spelling
// ("containerizer/mesos/provisioner/remove_container_errors"); here every
// character a Prometheus name cannot hold becomes '_'. Beside them, the
// pull durations as kubelet's kubelet_image_pull_duration_seconds has them:
// a histogram of seconds per pull that fetched something, labelled with the
// image's size bucket (image_size_in_bytes="0-10MB", ..., "100GB+": the
// compressed layers, as the manifest declares them).

#include <array>
#include <cstdint>
#include <map>
#include <string>

namespace prov::provisioner {

class PullDurations {
 public:
  // kubelet's buckets, in seconds.
  static constexpr std::array<double, 19> kBounds = {0.5, 1,   5,   10,  20,  30,   60,   120,  180, 240,
                                                     300, 360, 480, 600, 900, 1200, 1800, 2700, 3600};

  void observe(std::int64_t imageBytes, double seconds);

  // kubelet's label for a size: "0-10MB", "10MB-100MB", ..., "100GB+".
  static std::string sizeBucket(std::int64_t imageBytes);

  struct Series {
    std::array<std::uint64_t, kBounds.size()> counts{};  // per bound, not cumulative
    std::uint64_t count = 0;
    double sum = 0;
  };
  const std::map<std::string, Series>& series() const { return series_; }

 private:
  std::map<std::string, Series> series_;  // by size bucket
};

// The whole exposition: each of `values` as a gauge or counter, then the
// pull histogram as provisioner_image_pull_duration_seconds.
std::string prometheusText(const std::map<std::string, double>& values, const PullDurations& pulls);

}  // namespace prov::provisioner
