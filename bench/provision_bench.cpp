// bench_provision: many concurrent provisions on one embedded Provisioner.
//
//   build/bin/bench_provision [--containers=1000] [--images=10] [--dir=/tmp/bench-provision] [--scratch_mib=4096]
//
// The work dirs live on a scratch ext4 on a loop device, made anew before
// each timed run (--scratch_mib=0: in --dir instead).
//
// Starts Debian's docker-registry on a free 127.0.0.1 port, pushes --images
// images (skopeo, from OCI layouts) that share a base layer (a 4 MiB file and
// 200 small ones) and each add a small top layer. Then, with the default
// backend (overlay where the kernel has it):
//   cold_alone_s  each image provisioned alone into a fresh work dir, one
//                 after another (the sum);
//   cold_s        --containers provisions at once on one fresh Provisioner,
//                 container i from image i % --images;
//   warm          --containers more at once on the same Provisioner (every
//                 image now cached): total seconds, containers/s, p1/p50/p99
//                 latency of one provision call;
//   warm_policy   the cost of a signature policy: the images are signed
//                 (a throwaway gpg key, skopeo --sign-by into a file://
//                 lookaside) and the store is reopened --pairs times without
//                 a policy and with one that wants the key (signedBy), one
//                 after the other; each time --containers warm provisions.
//                 Medians of each; first_check_ms is the first provision of
//                 each image under the policy (gpg runs), per image.
// blobs_fetched counts layer blob downloads of the cold run (a counting
// puller around the registry puller); distinct_blobs the layers there are.
// Every container is destroyed at the end. The last line printed is one JSON
// object: warm_per_s, warm_p1_ms, warm_p99_ms, cold_s, cold_alone_s, blobs_fetched,
// distinct_blobs, peak_rss_mib, warm_plain_per_s, warm_policy_per_s,
// policy_ratio (and a few more).
// The floor (provision_floor.hpp): last, on a fresh file system, the system
// calls of the cold and warm rounds (paths named as the overlay backend names
// them) from one thread per core with nothing of ours around them:
// floor_cold_per_s, floor_warm_per_s, and warm_vs_floor (warm_per_s /
// floor_warm_per_s); and the CPU time of each warm round per provision
// (getrusage: warm_user_us, warm_sys_us, floor_warm_user_us,
// floor_warm_sys_us), which tells what a warm provision costs beyond its
// system calls. --overlay_view=0 names the real paths in both.

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "actors/actors.hpp"
#include "backend/backend.hpp"
#include "bench/options.hpp"
#include "bench/provision_floor.hpp"
#include "bench/provisioner_kit.hpp"
#include "bench/pull_system.hpp"
#include "bench/registry.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "provisioner/paths.hpp"
#include "provisioner/provisioner.hpp"
#include "store/trust.hpp"
#include "testkit/files.hpp"
#include "testkit/gpg_key.hpp"
#include "testkit/image_builder.hpp"
#include "testkit/real_registry.hpp"

namespace {

namespace fs = std::filesystem;
using namespace prov;
using SteadyClock = std::chrono::steady_clock;
using bench::CountingPuller;
using bench::makeProvisioner;
using bench::percentile;

double seconds(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

// The process's CPU time so far, user and system, in seconds.
struct CpuTime {
  double user = 0, system = 0;
};

CpuTime cpuTime() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  auto at = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return {at(usage.ru_utime), at(usage.ru_stime)};
}

// Microseconds of CPU per provision between `before` and `after`.
CpuTime perProvision(const CpuTime& before, const CpuTime& after, std::size_t count) {
  const double n = static_cast<double>(std::max<std::size_t>(count, 1));
  return {(after.user - before.user) * 1e6 / n, (after.system - before.system) * 1e6 / n};
}

struct Round {
  double seconds = 0;
  std::vector<double> latenciesMs;
  std::size_t failed = 0;
  std::string firstError;
};

// `count` provisions at once, container `prefix`i from image i % images.
Round provisionAll(provisioner::Provisioner& p, const std::vector<messages::Image>& images, std::size_t count,
                   const std::string& prefix) {
  Round round;
  std::vector<actors::Future<provisioner::ProvisionInfo>> futures;
  std::vector<SteadyClock::time_point> starts(count);
  std::vector<double> latencies(count, 0);
  std::atomic<std::size_t> done{0};
  const auto start = SteadyClock::now();
  for (std::size_t i = 0; i < count; ++i) {
    starts[i] = SteadyClock::now();
    auto f = p.provision(prefix + std::to_string(i), images[i % images.size()]);
    f.onAny([&latencies, &starts, &done, i] {
      latencies[i] = std::chrono::duration<double, std::milli>(SteadyClock::now() - starts[i]).count();
      ++done;
    });
    futures.push_back(f);
  }
  for (auto& f : futures) f.waitFor(std::chrono::minutes(30));
  round.seconds = seconds(start);
  while (done.load() < count) std::this_thread::yield();
  for (auto& f : futures) {
    if (!f.isReady()) {
      ++round.failed;
      if (round.firstError.empty()) round.firstError = f.isFailed() ? f.failure().message : "not ready";
    }
  }
  round.latenciesMs = latencies;
  return round;
}

void destroyAll(provisioner::Provisioner& p) {
  auto containers = p.containers();
  containers.waitFor(std::chrono::minutes(5));
  if (!containers.isReady()) return;
  std::vector<actors::Future<bool>> destroys;
  for (const auto& c : containers.get()) destroys.push_back(p.destroy(c.id));
  for (auto& d : destroys) d.waitFor(std::chrono::minutes(5));
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  std::size_t containers = 1000, imageCount = 10;
  std::string dir = "/tmp/bench-provision";
  std::size_t scratchMib = 4096;
  std::size_t pairs = 3;
  bool overlayView = true;
  po::options_description options(
      "bench_provision: concurrent provisions on one embedded Provisioner, cold and warm; last line is JSON");
  options.add_options()("containers", po::value(&containers)->default_value(containers), "provisions per round")(
      "images", po::value(&imageCount)->default_value(imageCount), "distinct images (sharing a base layer)")(
      "dir", po::value(&dir)->default_value(dir), "work directory (removed first)")(
      "scratch_mib", po::value(&scratchMib)->default_value(scratchMib),
      "size of the scratch ext4 (loop device) the work dirs go on, made anew before each timed run; 0: work in "
      "--dir on its own file system")("pairs", po::value(&pairs)->default_value(pairs),
                                      "warm rounds without and with a signature policy, alternated")(
      "overlay_view", po::value(&overlayView)->default_value(overlayView),
      "overlay names layers through a detached copy of the work dir's mount (BackendOptions::overlayViewRoot)");
  po::variables_map vm;
  if (auto exit = bench::parseOptions(argc, argv, options, vm)) return *exit;
  if (containers < 1 || imageCount < 1) {
    std::fprintf(stderr, "error: --containers and --images must be at least 1\n");
    return 1;
  }
  auto registry = bench::freshRegistry(dir);
  if (!registry) return 1;

  // The images: one shared base layer, one small top layer each.
  std::vector<testing::TarEntry> base = {testing::TarEntry::directory("bin"),
                                         testing::TarEntry::file("bin/big", std::string(4 << 20, 'b'), 0755)};
  for (int i = 0; i < 200; ++i)
    base.push_back(testing::TarEntry::file("etc/f" + std::to_string(i), std::string(500, 'e')));
  // Signed as they are pushed; the policy wants that key for the registry.
  testing::GpgKey key("bench");
  if (key.fingerprint().empty()) return 1;
  const fs::path registriesD = fs::path(dir) / "registries.d", policyFile = fs::path(dir) / "policy.json";
  testing::writeFile(registriesD / "local.yaml", "docker:\n  " + registry->hostPort() + ":\n    lookaside: file://" +
                                                     (fs::path(dir) / "sigs").string() + "\n");
  testing::writeFile(policyFile, R"({"default":[{"type":"reject"}],"transports":{"docker":{")" + registry->hostPort() +
                                     R"(":[{"type":"signedBy","keyType":"GPGKeys","keyPath":")" + key.publicKeyFile() +
                                     "\"}]}}}");
  ::setenv("GNUPGHOME", key.home().c_str(), 1);
  std::vector<messages::Image> images;
  for (std::size_t i = 0; i < imageCount; ++i) {
    testing::ImageSpec spec;
    spec.architecture = fetcher::hostPlatform().architecture();
    spec.layers = {base, {testing::TarEntry::file("app/id", std::to_string(i))}};
    testing::OciLayout layout(fs::path(dir) / ("layout" + std::to_string(i)));
    layout.tag(layout.addImage(spec), "latest");
    const std::string repo = "bench/app" + std::to_string(i) + ":latest";
    auto pushed = registry->push("oci:" + layout.dir().string() + ":latest", repo, "oci", false,
                                 {"--sign-by", key.fingerprint(), "--registries.d", registriesD.string()});
    if (pushed.status != 0) {
      std::fprintf(stderr, "error: push failed: %s\n", pushed.output.c_str());
      return 1;
    }
    messages::Image image;
    image.set_type(messages::Image::DOCKER);
    *image.mutable_reference() = *fetcher::parseImageReference(registry->hostPort() + "/" + repo);
    images.push_back(image);
  }
  ::unsetenv("GNUPGHOME");
  const std::size_t distinctBlobs = imageCount + 1;

  actors::Runtime runtime;
  auto registryPuller = fetcher::RegistryPuller::create(runtime, fetcher::RegistryOptions{});
  if (registryPuller.isError()) {
    std::fprintf(stderr, "error: %s\n", registryPuller.error().message.c_str());
    return 1;
  }
  auto counting = std::make_shared<CountingPuller>(std::shared_ptr<fetcher::Puller>(std::move(*registryPuller)));

  // Every timed run starts on an empty file system: one that just had
  // thousands of inodes deleted is slower to create them in.
  std::unique_ptr<bench::pull::ScratchFs> scratch;
  if (scratchMib > 0) {
    fs::create_directories(fs::path(dir) / "scratch");
    scratch = std::make_unique<bench::pull::ScratchFs>(fs::path(dir) / "scratch", scratchMib, false);
  }
  const fs::path workRoot = scratch ? scratch->mountPoint() : fs::path(dir);
  auto freshFs = [&] {
    if (scratch) scratch->reset();
  };

  // The images alone, one after another.
  double coldAlone = 0;
  for (std::size_t i = 0; i < imageCount; ++i) {
    freshFs();
    auto p = makeProvisioner(runtime, workRoot / "alone", counting, {.overlayView = overlayView});
    if (!p) return 1;
    const auto start = SteadyClock::now();
    auto f = p->provision("alone", images[i]);
    f.waitFor(std::chrono::minutes(10));
    coldAlone += seconds(start);
    if (!f.isReady()) {
      std::fprintf(stderr, "error: %s\n", f.isFailed() ? f.failure().message.c_str() : "not ready");
      return 1;
    }
    destroyAll(*p);
  }
  freshFs();
  auto p = makeProvisioner(runtime, workRoot / "work", counting, {.overlayView = overlayView});
  if (!p) return 1;
  counting->reset();
  const Round cold = provisionAll(*p, images, containers, "cold-");
  const std::size_t blobsFetched = counting->fetched();
  const CpuTime beforeWarm = cpuTime();
  const Round warm = provisionAll(*p, images, containers, "warm-");
  const CpuTime warmCpu = perProvision(beforeWarm, cpuTime(), containers);
  destroyAll(*p);
  p.reset();

  // The same store reopened without and with a policy, alternately.
  auto trust = store::Trust::load(
      runtime,
      store::TrustOptions{policyFile.string(), registriesD.string(), (workRoot / "work/store/docker/trust").string()},
      nullptr);
  if (trust.isError()) {
    std::fprintf(stderr, "error: %s\n", trust.error().message.c_str());
    return 1;
  }
  std::vector<double> plainPerS, policyPerS;
  double firstCheckMs = 0;
  std::size_t pairFailed = 0;
  std::string pairError;
  for (std::size_t pair = 0; pair < pairs; ++pair) {
    for (const bool withPolicy : {false, true}) {
      bench::ProvisionerExtras extras;
      extras.trust = withPolicy ? *trust : nullptr;
      extras.fresh = false;
      extras.overlayView = overlayView;
      auto reopened = makeProvisioner(runtime, workRoot / "work", counting, extras);
      if (!reopened) return 1;
      if (withPolicy && pair == 0) {
        const Round first = provisionAll(*reopened, images, imageCount, "first-");
        firstCheckMs = first.seconds * 1000 / static_cast<double>(imageCount);
        pairFailed += first.failed;
        if (pairError.empty()) pairError = first.firstError;
      }
      const Round round = provisionAll(*reopened, images, containers, withPolicy ? "policy-" : "plain-");
      (withPolicy ? policyPerS : plainPerS).push_back(static_cast<double>(containers) / round.seconds);
      pairFailed += round.failed;
      if (pairError.empty()) pairError = round.firstError;
      destroyAll(*reopened);
    }
  }
  const double plainMedian = percentile(plainPerS, 0.5), policyMedian = percentile(policyPerS, 0.5);
  const double policyRatio = plainMedian > 0 ? policyMedian / plainMedian : 0;  // 0 with --pairs=0

  // The floor: the same rounds' system calls, one thread per core, on a
  // fresh file system.
  freshFs();
  const std::size_t floorThreads = std::max(1u, std::thread::hardware_concurrency());
  const fs::path floorDir = workRoot / "floor";
  const std::vector<std::string> floorLayers = {(floorDir / "layers/top").string(),
                                                (floorDir / "layers/base").string()};
  testing::writeFile(floorDir / "layers/top/app/id", "0");
  testing::writeFile(floorDir / "layers/base/bin/big", std::string(4 << 20, 'b'));
  const std::string floorRoot = provisioner::paths::root((floorDir / "work").string());
  fs::create_directories(floorRoot);
  // Named as the overlay backend names them (through a copy of the mount).
  const std::string floorView = overlayView ? floorDir.string() : std::string();
  auto floorCold = bench::provisionFloor(floorRoot, floorLayers, "cold-", containers, floorThreads, floorView);
  const CpuTime beforeFloorWarm = cpuTime();
  auto floorWarm = floorCold.isError()
                       ? floorCold
                       : bench::provisionFloor(floorRoot, floorLayers, "warm-", containers, floorThreads, floorView);
  const CpuTime floorWarmCpu = perProvision(beforeFloorWarm, cpuTime(), containers);
  bench::pull::unmountBelow(floorDir);
  if (floorWarm.isError()) {
    std::fprintf(stderr, "error: %s\n", floorWarm.error().message.c_str());
    return 1;
  }

  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  const double peakRssMib = static_cast<double>(usage.ru_maxrss) / 1024.0;
  const double warmPerS = static_cast<double>(containers) / warm.seconds;
  std::printf(
      "cold: %zu provisions of %zu images in %.2f s (failed %zu) | the images alone, one after another: %.2f s\n",
      containers, imageCount, cold.seconds, cold.failed, coldAlone);
  std::printf("warm: %zu provisions in %.2f s = %.0f /s; latency p1 %.1f ms, p50 %.1f ms, p99 %.1f ms (failed %zu)\n",
              containers, warm.seconds, warmPerS, percentile(warm.latenciesMs, 0.01), percentile(warm.latenciesMs, 0.5),
              percentile(warm.latenciesMs, 0.99), warm.failed);
  std::printf("floor (the same system calls, %zu threads): first round %.0f /s, second %.0f /s; warm / floor %.2f\n",
              floorThreads, *floorCold, *floorWarm, warmPerS / *floorWarm);
  std::printf("CPU per warm provision: ours %.0f us user + %.0f us system; floor %.0f + %.0f\n", warmCpu.user,
              warmCpu.system, floorWarmCpu.user, floorWarmCpu.system);
  std::printf("layer blobs fetched %zu, distinct %zu; peak RSS %.1f MiB\n", blobsFetched, distinctBlobs, peakRssMib);
  std::printf(
      "warm, store reopened, medians of %zu: no policy %.0f /s, signedBy policy %.0f /s (ratio %.3f); first "
      "check %.1f ms per image (failed %zu)\n",
      pairs, plainMedian, policyMedian, policyRatio, firstCheckMs, pairFailed);
  if (!pairError.empty()) std::fprintf(stderr, "error: %s\n", pairError.c_str());
  if (!cold.firstError.empty() || !warm.firstError.empty()) {
    std::fprintf(stderr, "error: %s\n", (cold.firstError.empty() ? warm.firstError : cold.firstError).c_str());
  }
  std::printf(
      "{\"warm_per_s\":%.1f,\"warm_p1_ms\":%.2f,\"warm_p50_ms\":%.2f,\"warm_p99_ms\":%.2f,\"warm_s\":%.3f,\"cold_s\":%."
      "3f,"
      "\"cold_p99_ms\":%.2f,\"cold_alone_s\":%.3f,\"cold_vs_alone\":%.2f,\"blobs_fetched\":%zu,\"distinct_blobs\":%zu,"
      "\"peak_rss_mib\":%.1f,\"containers\":%zu,\"images\":%zu,\"warm_plain_per_s\":%.1f,"
      "\"warm_policy_per_s\":%.1f,\"policy_ratio\":%.3f,\"first_check_ms\":%.1f,\"floor_cold_per_s\":%.1f,"
      "\"floor_warm_per_s\":%.1f,\"warm_vs_floor\":%.3f,\"warm_user_us\":%.1f,\"warm_sys_us\":%.1f,"
      "\"floor_warm_user_us\":%.1f,\"floor_warm_sys_us\":%.1f,\"failed\":%zu}\n",
      warmPerS, percentile(warm.latenciesMs, 0.01), percentile(warm.latenciesMs, 0.5),
      percentile(warm.latenciesMs, 0.99), warm.seconds, cold.seconds, percentile(cold.latenciesMs, 0.99), coldAlone,
      cold.seconds / coldAlone, blobsFetched, distinctBlobs, peakRssMib, containers, imageCount, plainMedian,
      policyMedian, policyRatio, firstCheckMs, *floorCold, *floorWarm, warmPerS / *floorWarm, warmCpu.user,
      warmCpu.system, floorWarmCpu.user, floorWarmCpu.system, cold.failed + warm.failed + pairFailed);
  return cold.failed + warm.failed + pairFailed == 0 ? 0 : 1;
}
