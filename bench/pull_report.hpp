#pragma once

// bench_pull's results: the per-workload tables for people and the JSON
// object for machines (the last line printed).

#include <map>
#include <string>
#include <vector>

#include "bench/pull_workloads.hpp"

namespace prov::bench::pull {

struct ToolResult {
  std::string name;                                       // "ours", "skopeo+umoci", "containerd"
  std::string key;                                        // "ours", "skopeo_umoci", "containerd"
  std::vector<double> seconds;                            // one per successful run
  std::map<std::string, std::vector<double>> peakRssMib;  // per process
  std::string error;                                      // the failure that stopped it
  bool valid() const { return error.empty() && !seconds.empty(); }
};

struct WorkloadResult {
  Workload workload;
  std::string description;
  // Cores busy (of all) over one idle second of ours just before its runs:
  // other work on this shared machine skews the figures.
  double busyCores = 0;
  int cores = 0;
  std::vector<ToolResult> tools;  // ours first, then the peers measured
};

void printTables(const std::vector<WorkloadResult>& results);

// {"medium":{"ours_s":..,"skopeo_umoci_s":..,"containerd_s":..,
//  "speedup_vs_best_peer":..,"peak_rss_mib":..,<extras>},...}: medians of
// seconds; speedup = the fastest peer's median / ours; peak_rss_mib = the
// largest VmHWM of our child over the runs; null where a tool failed or was
// not measured ("errors" then holds the failure). With the floor measured,
// tar_sync_s and ours_vs_floor (ours' median / the floor's) too.
std::string resultsJson(const std::vector<WorkloadResult>& results, int runs);

}  // namespace prov::bench::pull
