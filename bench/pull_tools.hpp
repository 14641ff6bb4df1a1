#pragma once

// The pullers bench_pull compares, each run cold against the local registry
// with all its output on the scratch file system:
//   ours          this binary re-executed in child mode (--ours), which calls
//                 runOursOnce (bench/pull_ours.hpp) with an empty store;
//   skopeo+umoci  `skopeo copy docker://... oci:<layout>:latest` then
//                 `umoci unpack --image <layout>:latest <bundle>`, timed together;
//   containerd    `ctr images pull --plain-http` (fetch and unpack into the
//                 overlayfs snapshotter) against a containerd the run starts
//                 with a brand-new root and state (CRI disabled) and stops after;
//   tar -x + sync the floor, not a peer: GNU tar extracting the layers' tars
//                 (inflated beforehand, in the page cache), then `sync -f`.
// A run: a new empty scratch file system and whatever else the tool needs
// (untimed), `sync`, time the pull, check it did its work (untimed).

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/pull_workloads.hpp"

namespace prov::bench::pull {

struct ToolContext {
  std::filesystem::path dir;     // --dir: logs, containerd's state (socket), the RSS report
  std::filesystem::path mount;   // the scratch file system: every tool's output
  std::string registryHostPort;  // 127.0.0.1:PORT, plain HTTP
  std::chrono::seconds timeout{900};
  std::function<void()> resetScratch;  // empties `mount` (ScratchFs::reset)
};

struct ToolRun {
  bool ok = false;
  double seconds = 0;
  std::vector<std::pair<std::string, double>> peakRssMib;  // per process: "ours", "skopeo", "ctr", ...
  std::string error;
};

class Tool {
 public:
  virtual ~Tool() = default;
  virtual std::string name() const = 0;  // "ours", "skopeo+umoci", "containerd"
  virtual std::string key() const = 0;   // JSON prefix: "ours", "skopeo_umoci", "containerd"
  virtual ToolRun run(const BuiltWorkload& image) = 0;
};

std::unique_ptr<Tool> makeOurs(const ToolContext& context);
std::unique_ptr<Tool> makeSkopeoUmoci(const ToolContext& context);
std::unique_ptr<Tool> makeTarFloor(const ToolContext& context);
std::unique_ptr<Tool> makeContainerd(const ToolContext& context);

// The child side of `ours`: runs runOursOnce and writes this process's peak
// RSS (VmHWM, KiB) to `rssReport`. Returns the exit code.
int runOursChild(const std::string& registry, const std::string& reference, const std::string& store,
                 const std::string& rssReport);

}  // namespace prov::bench::pull
