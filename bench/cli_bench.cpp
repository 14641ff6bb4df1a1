// bench_cli: what a whole command costs, timed from outside (spawn to exit),
// this project's command line beside the peers in the same run.
//
//   build/bin/bench_cli [--runs=10] [--dir=/tmp/bench-cli] [--provisioner=PATH] [--rtt_ms=0]
//
// Needs root (the store's layers keep their owners). Installs skopeo, umoci,
// docker-registry and nginx-light when missing, starts Debian's docker-registry on a
// free 127.0.0.1 port (plain HTTP) and pushes one image with skopeo: busybox
// (the host's /bin/busybox and two links) in one layer. Then, --runs times,
// the tools alternating within a run and trading places from run to run:
//   images_empty      `provisioner images` on an empty work dir (no peer);
//   containers_empty  `provisioner containers` on an empty work dir (no peer);
//   tiny_cold         `provisioner pull` of the image into a new work dir,
//                     beside `skopeo copy` into a new OCI layout followed by
//                     `umoci unpack` (timed together);
//   warm_repull       the same pull again, everything present, beside
//                     `skopeo copy` into the layout that already holds it;
//   tiny_cold_known_store
//                     after an untimed `provisioner prune` (the image and its
//                     layer gone), the pull again: a cold pull into a store
//                     that exists and knows the registry speaks plain http,
//                     as on a node that has pulled before (no peer of its
//                     own: beside tiny_cold_skopeo_umoci in the speedup).
//   three_cold        `provisioner pull` of a second image, busybox and two
//                     small layers above it, into a new work dir, beside
//                     skopeo copy + umoci unpack of it (timed together):
//                     where more than one layer is fetched.
//   tiny_cold_static  tiny_cold again, both tools, from a registry that
//                     serves the image's files as they are (nginx,
//                     bench/static_registry.hpp) rather than docker-registry,
//                     which spends milliseconds of CPU on each answer (a
//                     blob's, 4-5 ms: it zeroes a new 4 MiB buffer for each):
//                     what the pulls cost without the registry's own time
//                     (first in odd runs, last in even ones).
// With --rtt_ms=N the pulls and copies reach the registry through a relay
// that holds each byte N/2 ms each way (bench/latency_proxy.hpp): a registry
// N ms away, as real ones are, where every round trip a tool waits for
// shows. `sync` runs before each timed command. Ours runs with its defaults (its
// layers synced to disk; the peers sync nothing). A new work dir knows
// nothing of the registry either: ours first tries TLS there, as for any
// registry on 127.0.0.1, finds plain http and remembers it (skopeo is told
// --src-tls-verify=false).
// Figures: the median milliseconds of each (min and max printed beside),
// and peer median / ours. The last line printed is one JSON object:
//   {"images_empty_ms":..,"containers_empty_ms":..,"tiny_cold_ms":..,
//    "tiny_cold_skopeo_umoci_ms":..,"tiny_cold_speedup":..,"warm_repull_ms":..,
//    "warm_repull_skopeo_ms":..,"warm_repull_speedup":..,"tiny_cold_known_store_ms":..,
//    "tiny_cold_known_store_speedup":..,"three_cold_ms":..,"three_cold_skopeo_umoci_ms":..,
//    "three_cold_speedup":..,"tiny_cold_static_ms":..,"tiny_cold_static_skopeo_umoci_ms":..,
//    "tiny_cold_static_speedup":..,"runs":..,"rtt_ms":..}

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/latency_proxy.hpp"
#include "bench/options.hpp"
#include "bench/pull_process.hpp"
#include "bench/pull_system.hpp"
#include "bench/registry.hpp"
#include "bench/static_registry.hpp"
#include "testkit/files.hpp"
#include "testkit/image_builder.hpp"

namespace {

namespace fs = std::filesystem;
namespace po = boost::program_options;
using namespace prov;
using bench::pull::ProcessResult;

// One command, timed; throws naming it and its log's tail when it fails.
double timedMs(const std::vector<std::string>& argv, const fs::path& log) {
  ::sync();
  const ProcessResult result = bench::pull::runLogged(argv, log, std::chrono::seconds(120));
  if (!result.ok()) {
    throw std::runtime_error("'" + bench::pull::joinArgs(argv) + "' failed (" + result.describe() +
                             "): " + bench::pull::tailOf(log));
  }
  return result.seconds * 1000.0;
}

struct Series {
  std::vector<double> ms;
  double median() const { return bench::median(ms); }
  std::string shown() const {
    char line[96];
    std::snprintf(line, sizeof line, "%8.1f ms  (min %.1f, max %.1f)", median(),
                  *std::min_element(ms.begin(), ms.end()), *std::max_element(ms.begin(), ms.end()));
    return line;
  }
};

}  // namespace

int main(int argc, char** argv) {
  int runs = 10;
  int rttMs = 0;
  std::string dir = "/tmp/bench-cli";
  std::string provisioner = (fs::read_symlink("/proc/self/exe").parent_path() / "provisioner").string();
  po::options_description options("bench_cli: whole commands timed from outside, ours beside skopeo and umoci");
  options.add_options()("runs", po::value(&runs)->default_value(runs), "timed runs per figure (the median is kept)")(
      "dir", po::value(&dir)->default_value(dir), "work directory (emptied first): registry, work dirs, logs")(
      "provisioner", po::value(&provisioner)->default_value(provisioner), "the provisioner command to time")(
      "rtt_ms", po::value(&rttMs)->default_value(rttMs),
      "round trip to the registry, in ms: pulls and copies go through a relay that holds each byte half of it "
      "each way (0: straight to the registry)");
  po::variables_map vm;
  if (auto exit = bench::parseOptions(argc, argv, options, vm)) return *exit;
  if (runs < 1) {
    std::fprintf(stderr, "error: --runs must be at least 1\n");
    return 1;
  }
  if (rttMs < 0 || rttMs > 10000) {
    std::fprintf(stderr, "error: --rtt_ms must be between 0 and 10000\n");
    return 1;
  }
  try {
    bench::pull::ensurePackages({"nginx-light"});
    auto registry = bench::freshRegistry(dir);
    if (!registry) return 1;
    const fs::path root(dir);
    const fs::path log = root / "commands.log";

    testing::ImageSpec spec;
    spec.layers = {{testing::TarEntry::directory("bin"),
                    testing::TarEntry::file("bin/busybox", testing::readFile("/bin/busybox"), 0755),
                    testing::TarEntry::symlink("bin/sh", "busybox"),
                    testing::TarEntry::symlink("bin/echo", "busybox")}};
    spec.cmd = {"/bin/sh"};
    testing::OciLayout source(root / "source");
    source.tag(source.addImage(spec), "latest");
    auto pushed = registry->push("oci:" + source.dir().string() + ":latest", "bench/tiny:latest", "v2s2");
    if (pushed.status != 0) throw std::runtime_error("skopeo failed to push: " + pushed.output);
    std::unique_ptr<bench::LatencyProxy> far;
    if (rttMs > 0)
      far = std::make_unique<bench::LatencyProxy>(registry->port(), std::chrono::microseconds(rttMs * 500));
    testing::ImageSpec threeSpec = spec;
    threeSpec.layers.push_back(
        {testing::TarEntry::directory("etc"), testing::TarEntry::file("etc/motd", "three layers\n", 0644)});
    threeSpec.layers.push_back(
        {testing::TarEntry::directory("app"), testing::TarEntry::file("app/run", "#!/bin/sh\necho run\n", 0755)});
    source.tag(source.addImage(threeSpec), "three");
    pushed = registry->push("oci:" + source.dir().string() + ":three", "bench/three:latest", "v2s2");
    if (pushed.status != 0) throw std::runtime_error("skopeo failed to push: " + pushed.output);
    const std::string reached = far ? "127.0.0.1:" + std::to_string(far->port()) : registry->hostPort();
    const std::string image = reached + "/bench/tiny:latest";
    const std::string three = reached + "/bench/three:latest";
    std::string error;
    auto files = bench::StaticRegistry::mirror(root / "static-registry", registry->hostPort(), "bench/tiny", "latest",
                                               error);
    if (!files) throw std::runtime_error(error);
    std::unique_ptr<bench::LatencyProxy> farFiles;
    if (rttMs > 0)
      farFiles = std::make_unique<bench::LatencyProxy>(files->port(), std::chrono::microseconds(rttMs * 500));
    const std::string staticImage = (farFiles ? "127.0.0.1:" + std::to_string(farFiles->port()) : files->hostPort()) +
                                    "/bench/tiny:latest";

    std::map<std::string, Series> series;
    for (int run = 0; run < runs; ++run) {
      const fs::path work = root / ("work" + std::to_string(run));
      const fs::path empty = root / ("empty" + std::to_string(run));
      const fs::path layout = root / ("layout" + std::to_string(run));
      const fs::path bundle = root / ("bundle" + std::to_string(run));
      auto ours = [&](const fs::path& workDir, const std::vector<std::string>& args) {
        std::vector<std::string> argv = {provisioner, "--work_dir=" + workDir.string()};
        argv.insert(argv.end(), args.begin(), args.end());
        return timedMs(argv, log);
      };
      auto skopeoCopy = [&](const std::string& from = "") {
        return timedMs({"skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                        "docker://" + (from.empty() ? image : from), "oci:" + layout.string() + ":latest"},
                       log);
      };
      auto umociUnpack = [&] {
        return timedMs({"umoci", "unpack", "--image", layout.string() + ":latest", bundle.string()}, log);
      };
      // Trading places from run to run: neither always goes first.
      const bool oursFirst = run % 2 == 0;
      // Our pull of `from` into `workDir` and the peer's command, timed into
      // `name` and `peerName`, in this run's order.
      auto timePair = [&](const std::string& name, const fs::path& workDir, const std::string& from,
                          const std::string& peerName, const std::function<double()>& peer) {
        for (int turn = 0; turn < 2; ++turn) {
          if ((turn == 0) == oursFirst) {
            series[name].ms.push_back(ours(workDir, {"pull", from}));
          } else {
            series[peerName].ms.push_back(peer());
          }
        }
      };
      // The pulls from the static registry come first in odd runs and last
      // in even ones: their difference from tiny_cold is then not where in
      // a run they come.
      const fs::path workStatic = root / ("static" + std::to_string(run));
      auto fromStaticRegistry = [&] {
        timePair("tiny_cold_static", workStatic, staticImage, "tiny_cold_static_skopeo_umoci",
                 [&] { return skopeoCopy(staticImage) + umociUnpack(); });
        if (!fs::is_directory(bundle / "rootfs/bin")) throw std::runtime_error("umoci unpacked no rootfs/bin");
        if (!fs::is_regular_file(workStatic / "store/docker/images")) {
          throw std::runtime_error("ours stored no image from the static registry");
        }
        for (const auto& path : {layout, bundle}) fs::remove_all(path);
      };
      if (!oursFirst) fromStaticRegistry();
      series["images_empty"].ms.push_back(ours(empty, {"images"}));
      series["containers_empty"].ms.push_back(ours(empty, {"containers"}));
      timePair("tiny_cold", work, image, "tiny_cold_skopeo_umoci", [&] { return skopeoCopy() + umociUnpack(); });
      timePair("warm_repull", work, image, "warm_repull_skopeo", [&] { return skopeoCopy(); });
      (void)ours(work, {"prune"});
      if (!fs::is_empty(work / "store/docker/layers")) throw std::runtime_error("prune left the image's layer");
      series["tiny_cold_known_store"].ms.push_back(ours(work, {"pull", image}));
      if (!fs::is_directory(bundle / "rootfs/bin")) throw std::runtime_error("umoci unpacked no rootfs/bin");
      for (const auto& path : {layout, bundle}) fs::remove_all(path);
      const fs::path work3 = root / ("three" + std::to_string(run));
      timePair("three_cold", work3, three, "three_cold_skopeo_umoci",
               [&] { return skopeoCopy(three) + umociUnpack(); });
      if (!fs::exists(bundle / "rootfs/app/run")) throw std::runtime_error("umoci unpacked no rootfs/app/run");
      for (const auto& path : {layout, bundle}) fs::remove_all(path);
      if (oursFirst) fromStaticRegistry();
      for (const auto& path : {work, empty, work3, workStatic}) fs::remove_all(path);
    }

    std::printf("bench_cli: %d runs, medians, registry round trip %s; %s\n", runs,
                rttMs > 0 ? (std::to_string(rttMs) + " ms").c_str() : "loopback",
                bench::pull::packageVersions({"nginx-light"}).c_str());
    for (const auto& [name, s] : series) std::printf("  %-30s %s\n", name.c_str(), s.shown().c_str());
    const double tinySpeedup = series["tiny_cold_skopeo_umoci"].median() / series["tiny_cold"].median();
    const double warmSpeedup = series["warm_repull_skopeo"].median() / series["warm_repull"].median();
    const double knownSpeedup = series["tiny_cold_skopeo_umoci"].median() / series["tiny_cold_known_store"].median();
    const double threeSpeedup = series["three_cold_skopeo_umoci"].median() / series["three_cold"].median();
    const double staticSpeedup = series["tiny_cold_static_skopeo_umoci"].median() / series["tiny_cold_static"].median();
    std::printf(
        "  tiny cold: skopeo+umoci / ours = %.2fx (into a known store %.2fx); warm re-pull: skopeo / ours = %.2fx; "
        "three layers cold: %.2fx\n",
        tinySpeedup, knownSpeedup, warmSpeedup, threeSpeedup);
    std::printf(
        "  tiny cold from a registry serving files as they are (nginx): skopeo+umoci / ours = %.2fx; "
        "docker-registry's own time in the cold pull: %.1f ms of ours, %.1f ms of skopeo+umoci's\n",
        staticSpeedup, series["tiny_cold"].median() - series["tiny_cold_static"].median(),
        series["tiny_cold_skopeo_umoci"].median() - series["tiny_cold_static_skopeo_umoci"].median());
    std::printf(
        "{\"images_empty_ms\":%.2f,\"containers_empty_ms\":%.2f,\"tiny_cold_ms\":%.2f,"
        "\"tiny_cold_skopeo_umoci_ms\":%.2f,\"tiny_cold_speedup\":%.2f,\"warm_repull_ms\":%.2f,"
        "\"warm_repull_skopeo_ms\":%.2f,\"warm_repull_speedup\":%.2f,\"tiny_cold_known_store_ms\":%.2f,"
        "\"tiny_cold_known_store_speedup\":%.2f,\"three_cold_ms\":%.2f,\"three_cold_skopeo_umoci_ms\":%.2f,"
        "\"three_cold_speedup\":%.2f,\"tiny_cold_static_ms\":%.2f,\"tiny_cold_static_skopeo_umoci_ms\":%.2f,"
        "\"tiny_cold_static_speedup\":%.2f,\"runs\":%d,\"rtt_ms\":%d}\n",
        series["images_empty"].median(), series["containers_empty"].median(), series["tiny_cold"].median(),
        series["tiny_cold_skopeo_umoci"].median(), tinySpeedup, series["warm_repull"].median(),
        series["warm_repull_skopeo"].median(), warmSpeedup, series["tiny_cold_known_store"].median(), knownSpeedup,
        series["three_cold"].median(), series["three_cold_skopeo_umoci"].median(), threeSpeedup,
        series["tiny_cold_static"].median(), series["tiny_cold_static_skopeo_umoci"].median(), staticSpeedup, runs,
        rttMs);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
