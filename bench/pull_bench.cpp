// bench_pull: cold pull + extraction of an image from a local registry, this
// project against skopeo copy + umoci unpack and containerd's ctr images pull.
// Provisions nothing.
//
//   build/bin/bench_pull [--runs=5] [--workloads=medium,many-small,big-file]
//                        [--peers=skopeo-umoci,containerd] [--dir=/tmp/bench-pull]
//                        [--scratch-mib=8192] [--timeout=900] [--keep]
//
// Needs root. Installs the peers' Debian packages when missing (containerd,
// umoci, skopeo, docker-registry, e2fsprogs, pigz), builds the workloads
// (pull_workloads.hpp; cached under --dir), starts Debian's docker-registry
// on a free 127.0.0.1 port with its storage under --dir and pushes them
// with skopeo, then makes a journaled ext4 on a loop device over a file
// under --dir (this machine's root fs is ext4 without a journal, where
// creating many files soon after deleting many is slow and erratic) and
// sends every tool's output there (pull_tools.hpp); it is made anew before
// every timed run, so each starts on the same empty file system. Each
// workload's registry blobs are read into the page cache first, so "cold"
// means nothing of the image on the client side. --runs cold runs per tool
// and workload, `sync` before each, the tools' order rotating from run to
// run.
//
// --peers=...,floor adds the floor (pull_tools.hpp): GNU tar extracting the
// layers' tars from the page cache, then `sync -f`, what any tool's durable
// extraction costs the kernel; it is printed and kept apart from the peers
// (tar_sync_s, ours_vs_floor).
//
// Figures per workload: median seconds of each tool (min and max beside
// them), speedup_vs_best_peer = the fastest peer's median / ours, and
// peak_rss_mib = the largest, over the runs, of our child process's own peak
// RSS (its VmHWM).
// Peers' peak RSS comes from wait4, which on Linux also counts the driver's
// own peak (the image a spawned child replaces at exec), so peer figures
// below the driver's peak (printed) read as "at most that".
// The last line printed is one JSON object:
//   {"medium":{"ours_s":..,"skopeo_umoci_s":..,"containerd_s":..,
//    "speedup_vs_best_peer":..,"peak_rss_mib":..,...},"many_small":{...},"big_file":{...}}
// with null for a figure a tool could not give (then "errors" says why).

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/options.hpp"
#include "bench/pull_process.hpp"
#include "bench/pull_report.hpp"
#include "bench/pull_system.hpp"
#include "bench/pull_tools.hpp"
#include "bench/pull_workloads.hpp"
#include "testkit/real_registry.hpp"

namespace {

namespace fs = std::filesystem;
using namespace prov::bench::pull;

std::vector<std::string> splitList(const std::string& list) {
  std::vector<std::string> items;
  std::stringstream s(list);
  for (std::string item; std::getline(s, item, ',');) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

std::string firstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

void printVersions() {
  std::printf("bench_pull: packages: %s\n", packageVersions().c_str());
  std::printf("bench_pull: containerd decompresses gzip with %s\n",
              fs::exists("/usr/bin/unpigz") ? "/usr/bin/unpigz (pigz)" : "Go's compress/gzip (no unpigz in PATH)");
  std::string output;
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"skopeo", "--version"}, {"umoci", "--version"}, {"containerd", "--version"}}) {
    if (tryRun(argv, output) == 0) std::printf("bench_pull: %s\n", firstLine(output).c_str());
  }
}

// Reads the image's blobs in the registry's storage, so that pulls find them
// in the page cache.
void warmRegistry(const fs::path& storage, const BuiltWorkload& image) {
  std::vector<std::string> digests;
  for (const auto& l : image.layers) digests.push_back(l.digest);
  digests.push_back(image.manifestDigest);
  std::vector<char> buffer(1 << 20);
  for (const auto& digest : digests) {
    const std::string hex = digest.substr(7);
    std::ifstream in(storage / "docker/registry/v2/blobs/sha256" / hex.substr(0, 2) / hex / "data", std::ios::binary);
    while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
    }
  }
}

// Busy and total jiffies of all CPUs, from /proc/stat.
std::pair<double, double> cpuJiffies() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  const double busy = user + nice + system + irq + softirq + steal;
  return {busy, busy + idle + iowait};
}

// How many of `cores` were busy over the next second (we are idle meanwhile).
double busyCores(int cores) {
  const auto [busy0, total0] = cpuJiffies();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const auto [busy1, total1] = cpuJiffies();
  return total1 > total0 ? (busy1 - busy0) / (total1 - total0) * cores : 0.0;
}

long ownPeakKib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

struct Settings {
  int runs = 5;
  std::vector<Workload> workloads;
  std::vector<std::string> peers;
  fs::path dir;
  std::size_t scratchMib = 8192;
  std::chrono::seconds timeout{900};
  bool keep = false;
};

std::vector<std::unique_ptr<Tool>> makeTools(const Settings& settings, const ToolContext& context) {
  std::vector<std::unique_ptr<Tool>> tools;
  tools.push_back(makeOurs(context));
  for (const auto& peer : settings.peers) {
    if (peer == "skopeo-umoci") tools.push_back(makeSkopeoUmoci(context));
    if (peer == "containerd") tools.push_back(makeContainerd(context));
    if (peer == "floor") tools.push_back(makeTarFloor(context));
  }
  return tools;
}

WorkloadResult measure(const BuiltWorkload& image, std::vector<std::unique_ptr<Tool>>& tools, int runs) {
  WorkloadResult result;
  result.workload = image.workload;
  result.description = image.describe();
  result.cores = static_cast<int>(std::thread::hardware_concurrency());
  result.busyCores = busyCores(result.cores);
  for (const auto& tool : tools) result.tools.push_back({tool->name(), tool->key(), {}, {}, ""});
  for (int run = 0; run < runs; ++run) {
    std::string line = image.workload.name + " run " + std::to_string(run + 1) + "/" + std::to_string(runs) + ":";
    for (std::size_t k = 0; k < tools.size(); ++k) {
      const std::size_t t = (k + static_cast<std::size_t>(run)) % tools.size();  // rotate the order
      ToolResult& r = result.tools[t];
      if (!r.error.empty()) continue;  // failed before: not again
      checkInterrupted();
      const ToolRun one = tools[t]->run(image);
      if (!one.ok) {
        r.error = one.error;
        line += " " + r.name + " FAILED;";
        std::fprintf(stderr, "bench_pull: %s on %s: %s\n", r.name.c_str(), image.workload.name.c_str(),
                     one.error.c_str());
        continue;
      }
      r.seconds.push_back(one.seconds);
      for (const auto& [process, mib] : one.peakRssMib) r.peakRssMib[process].push_back(mib);
      char figure[64];
      std::snprintf(figure, sizeof figure, " %s %.2f s;", r.name.c_str(), one.seconds);
      line += figure;
    }
    line.pop_back();
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
  return result;
}

int runBenchmark(const Settings& settings) {
  ensurePackages();
  printVersions();
  fs::create_directories(settings.dir);
  std::vector<BuiltWorkload> images;
  for (const auto& workload : settings.workloads) {
    images.push_back(prepareWorkload(workload, settings.dir / "images"));
    std::printf("bench_pull: %s: %s\n", workload.name.c_str(), images.back().describe().c_str());
  }

  std::string error;
  auto registry = prov::testing::RealRegistry::start(settings.dir / "registry", {}, error);
  if (!registry) throw std::runtime_error("Failed to start docker-registry: " + error);
  for (const auto& image : images) {
    auto pushed = registry->push("oci:" + image.layout.string() + ":latest", image.repository() + ":latest", "oci");
    if (pushed.status != 0) {
      throw std::runtime_error("Failed to push '" + image.repository() + "' with skopeo: " + pushed.output);
    }
  }
  std::printf("bench_pull: registry %s (storage %s)\n", registry->url().c_str(),
              (settings.dir / "registry" / "storage").c_str());

  ScratchFs scratch(settings.dir, settings.scratchMib, settings.keep);
  std::printf("bench_pull: scratch ext4 on %s (direct I/O) at %s, %zu MiB\n", scratch.loopDevice().c_str(),
              scratch.mountPoint().c_str(), settings.scratchMib);
  ToolContext context{settings.dir, scratch.mountPoint(), registry->hostPort(), settings.timeout,
                      [&scratch] { scratch.reset(); }};
  auto tools = makeTools(settings, context);

  std::vector<WorkloadResult> results;
  for (const auto& image : images) {
    warmRegistry(settings.dir / "registry" / "storage", image);
    results.push_back(measure(image, tools, settings.runs));
  }
  std::printf("bench_pull: the driver's own peak RSS: %.1f MiB\n", static_cast<double>(ownPeakKib()) / 1024.0);
  printTables(results);
  std::printf("%s\n", resultsJson(results, settings.runs).c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  Settings settings;
  std::string workloads = "medium,many-small,big-file";
  std::string peers = "skopeo-umoci,containerd";
  std::string dir = "/tmp/bench-pull";
  int timeout = 900;
  std::string registry, reference, store, rssReport;
  po::options_description options(
      "bench_pull: cold pull + extraction from a local registry, ours vs skopeo+umoci and containerd "
      "(needs root; installs the peers' packages; last line is JSON)");
  options.add_options()("runs", po::value<int>(&settings.runs)->default_value(5),
                        "cold runs per tool and workload (medians reported)")(
      "workloads", po::value<std::string>(&workloads)->default_value(workloads),
      "comma-separated: medium, many-small, big-file")(
      "peers", po::value<std::string>(&peers)->default_value(peers),
      "comma-separated peers to measure: skopeo-umoci, containerd, floor (tar -x + sync of the layers' tars: what "
      "the kernel needs, not counted as a peer); or none")(
      "dir", po::value<std::string>(&dir)->default_value(dir),
      "work directory: cached images, registry storage, logs, the scratch image file and its mount point "
      "(needs ~3 GiB plus up to --scratch-mib for the sparse scratch image)")(
      "scratch-mib", po::value<std::size_t>(&settings.scratchMib)->default_value(8192),
      "size of the scratch ext4 that every tool writes to (one tool's output at a time)")(
      "timeout", po::value<int>(&timeout)->default_value(timeout), "seconds one tool may take for one pull")(
      "keep",
      "leave the scratch file system, with the last run's output, mounted at <dir>/mnt (its loop "
      "device attached)");
  po::options_description child("Child mode (what bench_pull runs to time this project; see bench/pull_ours.hpp)");
  child.add_options()("ours", "pull --reference into --store with this project's store, once, and exit")(
      "registry", po::value<std::string>(&registry), "127.0.0.1:PORT of the plain-HTTP registry")(
      "reference", po::value<std::string>(&reference), "the image, e.g. 127.0.0.1:PORT/bench/medium:latest")(
      "store", po::value<std::string>(&store), "the store's directory (absent: a cold store)")(
      "rss-report", po::value<std::string>(&rssReport), "file to write this process's peak RSS (KiB) to");
  options.add(child);
  po::variables_map vm;
  if (auto exit = prov::bench::parseOptions(argc, argv, options, vm)) return *exit;

  if (vm.count("ours")) {
    if (registry.empty() || reference.empty() || store.empty()) {
      std::cerr << "error: --ours needs --registry, --reference and --store\n";
      return 1;
    }
    return runOursChild(registry, reference, store, rssReport);
  }

  if (settings.runs < 1 || timeout < 1 || settings.scratchMib < 1024) {
    std::cerr << "error: --runs and --timeout must be at least 1 and --scratch-mib at least 1024\n";
    return 1;
  }
  for (const auto& name : splitList(workloads)) {
    const auto& all = allWorkloads();
    const auto found = std::find_if(all.begin(), all.end(), [&](const Workload& w) { return w.name == name; });
    if (found == all.end()) {
      std::cerr << "error: unknown workload '" << name << "' (medium, many-small, big-file)\n";
      return 1;
    }
    settings.workloads.push_back(*found);
  }
  for (const auto& name : splitList(peers == "none" ? "" : peers)) {
    if (name != "skopeo-umoci" && name != "containerd" && name != "floor") {
      std::cerr << "error: unknown peer '" << name << "' (skopeo-umoci, containerd, floor)\n";
      return 1;
    }
    settings.peers.push_back(name);
  }
  if (settings.workloads.empty()) {
    std::cerr << "error: --workloads names none\n";
    return 1;
  }
  if (::geteuid() != 0) {
    std::cerr << "error: bench_pull installs packages, makes loop devices and mounts, and must run as root\n";
    return 1;
  }
  settings.dir = fs::absolute(dir);
  settings.timeout = std::chrono::seconds(timeout);
  settings.keep = vm.count("keep") != 0;

  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep our lines in order with the errors on stderr
  installSignalHandlers();
  try {
    return runBenchmark(settings);
  } catch (const Interrupted&) {
    std::fprintf(stderr, "bench_pull: interrupted; cleaned up\n");
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_pull: %s\n", e.what());
    return 1;
  }
}
