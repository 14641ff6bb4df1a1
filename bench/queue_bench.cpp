// bench_queue: the node-wide pull queue under a burst, on one embedded
// Provisioner pulling from Debian's docker-registry on 127.0.0.1.
//
//   build/bin/bench_queue [--big_mib=1024] [--big_layers=8] [--burst=100] [--burst_mib=50] [--runs=3]
//                         [--dir=/tmp/bench-queue] [--scratch_mib=6144]
//
// Priority: a small image (one layer, 400 files, ~1 MiB: a busybox) is
// provisioned while a big one (--big_layers uncompressed layers of
// --big_mib together, more layers than the extractor has slots) is being
// pulled into the same store:
//   small_alone_ms  the small image alone;
//   small_fifo_ms   during the big pull, both at priority 0 (first come,
//                   first served: it waits for the big image's layers);
//   small_prio_ms   during the big pull, the small one at priority 10 (it
//                   takes the extractor's urgent slot);
//   big_alone_s, big_fifo_s, big_prio_s  the big pull in each case: what
//                   the urgent request costs it.
// The small request starts once the big pull holds every extractor slot
// and has layers waiting. Medians of --runs, each on a fresh file system.
//
// Burst: --burst provisions at once of one uncached image of 5 gzip layers
// (--burst_mib together), as when a hundred pods land on a node with the
// same new image: single_s is one pull-and-provision alone (median of
// --runs), then p50/p99 of the burst's time-to-rootfs against it, and the
// layer blobs fetched (each should be fetched once).
//
// The last line is one JSON object.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "actors/actors.hpp"
#include "backend/backend.hpp"
#include "bench/options.hpp"
#include "bench/provisioner_kit.hpp"
#include "bench/pull_system.hpp"
#include "bench/registry.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "provisioner/provisioner.hpp"
#include "store/extractor.hpp"
#include "testkit/image_builder.hpp"
#include "testkit/real_registry.hpp"

namespace {

namespace fs = std::filesystem;
using namespace prov;
using SteadyClock = std::chrono::steady_clock;
using bench::CountingPuller;
using bench::makeProvisioner;
using bench::median;
using bench::percentile;

double secondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

// Bytes that neither repeat nor compress (a layer of binaries, roughly).
std::string noise(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string bytes(n, '\0');
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    const std::uint64_t word = random();
    std::memcpy(&bytes[i], &word, 8);
  }
  return bytes;
}

// Pushes `spec` as `repo:latest`; the image to ask for, or nothing.
std::optional<messages::Image> push(testing::RealRegistry& registry, const fs::path& dir, const std::string& repo,
                                    const testing::ImageSpec& spec) {
  testing::OciLayout layout(dir / ("layout-" + repo));
  layout.tag(layout.addImage(spec), "latest");
  auto pushed = registry.push("oci:" + layout.dir().string() + ":latest", "bench/" + repo + ":latest", "oci");
  fs::remove_all(layout.dir());
  if (pushed.status != 0) {
    std::fprintf(stderr, "error: push of %s failed: %s\n", repo.c_str(), pushed.output.c_str());
    return std::nullopt;
  }
  messages::Image image;
  image.set_type(messages::Image::DOCKER);
  *image.mutable_reference() = *fetcher::parseImageReference(registry.hostPort() + "/bench/" + repo + ":latest");
  return image;
}

// One provision: seconds, or a negative number after a line on stderr.
double provisionOne(provisioner::Provisioner& p, const std::string& id, const messages::Image& image) {
  const auto start = SteadyClock::now();
  auto f = p.provision(id, image);
  f.waitFor(std::chrono::minutes(30));
  const double s = secondsSince(start);
  if (!f.isReady()) {
    std::fprintf(stderr, "error: %s: %s\n", id.c_str(), f.isFailed() ? f.failure().message.c_str() : "not ready");
    return -1;
  }
  return s;
}

struct WithBig {
  double smallMs = 0;
  double bigS = 0;
};

// The small image provisioned once the big pull holds every slot and has
// layers waiting; `smallPriority` for the small one.
std::optional<WithBig> duringBig(provisioner::Provisioner& p, store::Extractor& extractor, const messages::Image& big,
                                 messages::Image small, int smallPriority) {
  const auto start = SteadyClock::now();
  auto bigDone = p.provision("big", big);
  for (;;) {
    auto load = extractor.load();
    load.waitFor(std::chrono::seconds(10));
    if (load.isReady() && load->running >= load->slots && load->waiting > 0) break;
    if (!bigDone.isPending()) {
      std::fprintf(stderr, "error: the big pull ended before it filled the slots\n");
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  small.set_priority(smallPriority);
  const double smallS = provisionOne(p, "small", small);
  bigDone.waitFor(std::chrono::minutes(30));
  if (smallS < 0 || !bigDone.isReady()) {
    if (bigDone.isFailed()) std::fprintf(stderr, "error: big: %s\n", bigDone.failure().message.c_str());
    return std::nullopt;
  }
  return WithBig{smallS * 1000, secondsSince(start)};
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  std::size_t bigMib = 1024, bigLayers = 8, burst = 100, burstMib = 50, runs = 3, scratchMib = 6144;
  std::string dir = "/tmp/bench-queue";
  po::options_description options(
      "bench_queue: a small urgent image during a big pull (FIFO against priority), and a burst of provisions of "
      "one uncached image; last line is JSON");
  options.add_options()("big_mib", po::value(&bigMib)->default_value(bigMib), "the big image's size")(
      "big_layers", po::value(&bigLayers)->default_value(bigLayers),
      "the big image's layers")("burst", po::value(&burst)->default_value(burst), "provisions at once in the burst")(
      "burst_mib", po::value(&burstMib)->default_value(burstMib),
      "the burst image's size (5 layers)")("runs", po::value(&runs)->default_value(runs), "runs per figure (medians)")(
      "dir", po::value(&dir)->default_value(dir), "work directory (removed first)")(
      "scratch_mib", po::value(&scratchMib)->default_value(scratchMib),
      "size of the scratch ext4 (loop device) the work dirs go on, made anew before each timed run; 0: in --dir");
  po::variables_map vm;
  if (auto exit = bench::parseOptions(argc, argv, options, vm)) return *exit;
  if (bigLayers < 1 || runs < 1 || burst < 1 || burstMib < 5) {
    std::fprintf(stderr, "error: --big_layers, --runs and --burst must be at least 1, --burst_mib at least 5\n");
    return 1;
  }
  auto registry = bench::freshRegistry(dir);
  if (!registry) return 1;
  const std::string arch = fetcher::hostPlatform().architecture();

  // The big image: uncompressed layers, so that building it is quick and
  // pulling it is disk and hashing, not inflating.
  testing::ImageSpec bigSpec;
  bigSpec.architecture = arch;
  bigSpec.compression = testing::TarCompression::None;
  for (std::size_t i = 0; i < bigLayers; ++i) {
    const std::size_t bytes = (bigMib << 20) / bigLayers;
    bigSpec.layers.push_back({testing::TarEntry::file("big/" + std::to_string(i), noise(bytes, i + 1))});
  }
  auto big = push(*registry, dir, "big", bigSpec);
  bigSpec.layers.clear();
  // The small image: 400 files of ~2.5 KiB.
  testing::ImageSpec smallSpec;
  smallSpec.architecture = arch;
  smallSpec.layers.emplace_back();
  for (int i = 0; i < 400; ++i) {
    smallSpec.layers[0].push_back(testing::TarEntry::file("bin/tool" + std::to_string(i), noise(2500, 1000 + i), 0755));
  }
  auto small = push(*registry, dir, "small", smallSpec);
  // The burst image: 5 gzip layers.
  testing::ImageSpec burstSpec;
  burstSpec.architecture = arch;
  for (int i = 0; i < 5; ++i) {
    std::vector<testing::TarEntry> layer;
    const std::size_t files = 20, bytes = (burstMib << 20) / 5 / files;
    for (std::size_t f = 0; f < files; ++f) {
      layer.push_back(testing::TarEntry::file("l" + std::to_string(i) + "/f" + std::to_string(f),
                                              noise(bytes, 5000 + static_cast<std::uint64_t>(i * 100 + f))));
    }
    burstSpec.layers.push_back(std::move(layer));
  }
  auto burstImage = push(*registry, dir, "burst", burstSpec);
  if (!big || !small || !burstImage) return 1;

  actors::Runtime runtime;
  auto registryPuller = fetcher::RegistryPuller::create(runtime, fetcher::RegistryOptions{});
  if (registryPuller.isError()) {
    std::fprintf(stderr, "error: %s\n", registryPuller.error().message.c_str());
    return 1;
  }
  auto counting = std::make_shared<CountingPuller>(std::shared_ptr<fetcher::Puller>(std::move(*registryPuller)));
  auto extractor = std::make_shared<store::Extractor>(runtime);

  std::unique_ptr<bench::pull::ScratchFs> scratch;
  if (scratchMib > 0) {
    fs::create_directories(fs::path(dir) / "scratch");
    scratch = std::make_unique<bench::pull::ScratchFs>(fs::path(dir) / "scratch", scratchMib, false);
  }
  const fs::path work = (scratch ? scratch->mountPoint() : fs::path(dir)) / "work";
  // A provisioner on a fresh file system, for one timed case.
  auto fresh = [&] {
    if (scratch) scratch->reset();
    bench::ProvisionerExtras extras;
    extras.extractor = extractor;
    return makeProvisioner(runtime, work, counting, extras);
  };

  std::vector<double> smallAlone, bigAlone, smallFifo, bigFifo, smallPrio, bigPrio, single;
  for (std::size_t r = 0; r < runs; ++r) {
    {
      auto p = fresh();
      if (!p) return 1;
      const double s = provisionOne(*p, "small", *small);
      if (s < 0) return 1;
      smallAlone.push_back(s * 1000);
    }
    {
      auto p = fresh();
      if (!p) return 1;
      const double s = provisionOne(*p, "big", *big);
      if (s < 0) return 1;
      bigAlone.push_back(s);
    }
    for (int priority : {0, 10}) {
      auto p = fresh();
      if (!p) return 1;
      auto measured = duringBig(*p, *extractor, *big, *small, priority);
      if (!measured) return 1;
      (priority == 0 ? smallFifo : smallPrio).push_back(measured->smallMs);
      (priority == 0 ? bigFifo : bigPrio).push_back(measured->bigS);
    }
    {
      auto p = fresh();
      if (!p) return 1;
      const double s = provisionOne(*p, "single", *burstImage);
      if (s < 0) return 1;
      single.push_back(s);
    }
    std::fprintf(stderr, "run %zu: small alone %.0f ms, fifo %.0f ms, prio %.0f ms; big %.2f / %.2f / %.2f s\n", r + 1,
                 smallAlone.back(), smallFifo.back(), smallPrio.back(), bigAlone.back(), bigFifo.back(),
                 bigPrio.back());
  }

  // The burst, once (it is its own median over --burst requests).
  auto p = fresh();
  if (!p) return 1;
  counting->reset();
  std::vector<actors::Future<provisioner::ProvisionInfo>> futures;
  std::vector<double> latencies(burst, 0);
  std::atomic<std::size_t> done{0};
  const auto burstStart = SteadyClock::now();
  for (std::size_t i = 0; i < burst; ++i) {
    auto f = p->provision("pod-" + std::to_string(i), *burstImage);
    f.onAny([&latencies, &done, burstStart, i] {
      latencies[i] = std::chrono::duration<double>(SteadyClock::now() - burstStart).count();
      ++done;
    });
    futures.push_back(f);
  }
  std::size_t failed = 0;
  for (auto& f : futures) {
    f.waitFor(std::chrono::minutes(30));
    if (!f.isReady()) ++failed;
  }
  while (done.load() < burst) std::this_thread::yield();
  const double burstS = secondsSince(burstStart);
  const std::size_t blobs = counting->fetched();
  p.reset();

  const auto info = extractor->load();
  info.waitFor(std::chrono::seconds(10));
  const std::size_t slots = info.isReady() ? info->slots : 0, urgent = info.isReady() ? info->urgent : 0;
  const double singleS = median(single), p50 = percentile(latencies, 0.5), p99 = percentile(latencies, 0.99);
  std::printf("extractor: %zu slots + %zu urgent; big image %zu MiB in %zu layers; medians of %zu runs\n", slots,
              urgent, bigMib, bigLayers, runs);
  std::printf(
      "small image alone %.0f ms | during the big pull: FIFO %.0f ms (%.1fx alone), priority %.0f ms (%.1fx "
      "alone); priority %.1fx sooner than FIFO\n",
      median(smallAlone), median(smallFifo), median(smallFifo) / median(smallAlone), median(smallPrio),
      median(smallPrio) / median(smallAlone), median(smallFifo) / median(smallPrio));
  std::printf("big pull alone %.2f s | with the small one FIFO %.2f s, with priority %.2f s (%+.1f%%)\n",
              median(bigAlone), median(bigFifo), median(bigPrio),
              100.0 * (median(bigPrio) - median(bigAlone)) / median(bigAlone));
  std::printf(
      "burst: %zu provisions of one uncached %zu MiB image in %.2f s: p50 %.2f s, p99 %.2f s; one alone "
      "%.2f s (p99 %.2fx); layer blobs fetched %zu of 5; failed %zu\n",
      burst, burstMib, burstS, p50, p99, singleS, p99 / singleS, blobs, failed);
  std::printf(
      "{\"slots\":%zu,\"urgent_slots\":%zu,\"small_alone_ms\":%.1f,\"small_fifo_ms\":%.1f,\"small_prio_ms\":%.1f,"
      "\"prio_vs_alone\":%.2f,\"fifo_vs_prio\":%.2f,\"big_alone_s\":%.3f,\"big_fifo_s\":%.3f,\"big_prio_s\":%.3f,"
      "\"burst\":%zu,\"burst_single_s\":%.3f,\"burst_p50_s\":%.3f,\"burst_p99_s\":%.3f,\"burst_p99_vs_single\":%.2f,"
      "\"burst_blobs_fetched\":%zu,\"failed\":%zu}\n",
      slots, urgent, median(smallAlone), median(smallFifo), median(smallPrio), median(smallPrio) / median(smallAlone),
      median(smallFifo) / median(smallPrio), median(bigAlone), median(bigFifo), median(bigPrio), burst, singleS, p50,
      p99, p99 / singleS, blobs, failed);
  return failed == 0 ? 0 : 1;
}
