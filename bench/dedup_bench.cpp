// bench_dedup: two images that share one big layer on two different bases
// (issue #19: a layer is extracted once, whatever it sits on). Pulls the
// first, then the second, into a fresh store each run, and says what the
// second pull costs: seconds, bytes this process wrote to the disk
// (/proc/self/io write_bytes, `sync` after the pull), and how much the
// store grew on disk, against the size of the second image's own base.
//
//   build/bin/bench_dedup [--runs=5] [--shared-mib=200] [--base-mib=20]
//                         [--dir=/var/tmp/bench-dedup]
//
// The images are OCI layouts with zstd layers, built under --dir on the
// first run (kept): the shared layer is --shared-mib of 1 MiB files of
// pseudo-random text with every parent directory in the tar (as tar
// writers make them); each base is --base-mib of other files. The store
// syncs each layer as it commits (the default). The first pull of each run
// is timed too, as the cold figure the second is measured against.
// The last line printed is one JSON object:
//   {"runs":5,"shared_mib":200,"base_mib":20,"first_pull_s":..,"second_pull_s":..,
//    "second_written_mib":..,"second_store_growth_mib":..,"second_base_mib":..}
// (medians over the runs).

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "actors/actors.hpp"
#include "bench/options.hpp"
#include "fetcher/local/local.hpp"
#include "store/image_store.hpp"
#include "store/layer_disk.hpp"
#include "testkit/image_builder.hpp"

namespace {

namespace fs = std::filesystem;
using prov::testing::TarEntry;

constexpr std::size_t kMiB = 1024 * 1024;

// `count` files of 1 MiB of pseudo-random lowercase text under `dir`/, the
// directories in the tar before their files.
std::vector<TarEntry> filesUnder(const std::string& dir, std::size_t count, unsigned seed) {
  std::vector<TarEntry> entries = {TarEntry::directory(dir)};
  std::mt19937_64 random(seed);
  for (std::size_t i = 0; i < count; ++i) {
    const std::string sub = dir + "/d" + std::to_string(i / 50);
    if (i % 50 == 0) entries.push_back(TarEntry::directory(sub));
    std::string text(kMiB, '\0');
    for (auto& c : text) c = static_cast<char>('a' + random() % 26);
    entries.push_back(TarEntry::file(sub + "/f" + std::to_string(i), std::move(text)));
  }
  return entries;
}

// The OCI layout `name` under `dir` (built when missing): one base, then the shared layer.
fs::path layout(const fs::path& dir, const std::string& name, std::size_t baseMiB, std::size_t sharedMiB,
                unsigned baseSeed) {
  const fs::path path = dir / ("images/" + name + "-" + std::to_string(baseMiB) + "-" + std::to_string(sharedMiB));
  if (fs::exists(path / "index.json")) return path;
  std::printf("bench_dedup: building %s\n", path.c_str());
  std::fflush(stdout);
  fs::remove_all(path);
  prov::testing::OciLayout built(path);
  prov::testing::ImageSpec spec;
  spec.architecture = prov::fetcher::hostPlatform().architecture();
  spec.compression = prov::testing::TarCompression::Zstd;
  std::vector<TarEntry> shared = filesUnder("opt/shared", sharedMiB, 1);
  shared.insert(shared.begin(), TarEntry::directory("opt"));
  spec.layers = {filesUnder("base-" + name, baseMiB, baseSeed), std::move(shared)};
  built.tag(built.addImage(spec), "latest");
  return path;
}

std::uint64_t writtenBytes() {
  std::ifstream io("/proc/self/io");
  for (std::string key; io >> key;) {
    std::uint64_t value = 0;
    io >> value;
    if (key == "write_bytes:") return value;
  }
  return 0;
}

std::int64_t storeBytes(const fs::path& store) {
  auto bytes = prov::store::diskUsage(store.string());
  return bytes.isSome() ? *bytes : -1;
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  po::options_description options("bench_dedup");
  int runs = 5;
  std::size_t sharedMiB = 200, baseMiB = 20;
  std::string dirArg = "/var/tmp/bench-dedup";
  options.add_options()("runs", po::value(&runs), "timed runs (5)")("shared-mib", po::value(&sharedMiB),
                                                                    "the shared layer's size, MiB (200)")(
      "base-mib", po::value(&baseMiB), "each base's size, MiB (20)")("dir", po::value(&dirArg), "work directory");
  po::variables_map vm;
  if (auto stop = prov::bench::parseOptions(argc, argv, options, vm)) return *stop;
  const fs::path dir = dirArg;
  fs::create_directories(dir);
  const fs::path first = layout(dir, "a", baseMiB, sharedMiB, 2);
  const fs::path second = layout(dir, "b", baseMiB, sharedMiB, 3);

  prov::actors::Runtime runtime;
  auto made = prov::fetcher::OciLayoutPuller::create(runtime);
  if (made.isError()) {
    std::fprintf(stderr, "error: %s\n", made.error().message.c_str());
    return 1;
  }
  std::shared_ptr<prov::fetcher::Puller> puller(std::move(*made));
  auto image = [](const fs::path& path) {
    prov::messages::Image image;
    image.set_type(prov::messages::Image::OCI_LAYOUT);
    image.set_path(path.string());
    image.set_layout_tag("latest");
    return image;
  };
  std::vector<double> firstS, secondS, writtenMiB, growthMiB, baseOnDiskMiB;
  for (int run = 0; run < runs; ++run) {
    const fs::path storeDir = dir / "store";
    fs::remove_all(storeDir);
    ::sync();
    prov::store::ImageStoreOptions storeOptions;
    storeOptions.storeDir = storeDir.string();
    auto store = prov::store::ImageStore::create(runtime, storeOptions,
                                                 [puller](const prov::messages::Image&) { return puller; });
    if (store.isError() || !(*store)->recover().waitFor(std::chrono::minutes(5))) {
      std::fprintf(stderr, "error: the store at %s did not start\n", storeDir.c_str());
      return 1;
    }
    using Clock = std::chrono::steady_clock;
    auto pull = [&](const fs::path& path) -> double {
      const auto started = Clock::now();
      auto got = (*store)->get(image(path));
      got.waitFor(std::chrono::minutes(30));
      if (!got.isReady()) {
        std::fprintf(stderr, "error: pulling %s: %s\n", path.c_str(),
                     got.isFailed() ? got.failure().message.c_str() : "discarded");
        std::exit(1);
      }
      return std::chrono::duration<double>(Clock::now() - started).count();
    };
    firstS.push_back(pull(first));
    ::sync();
    const std::uint64_t writtenBefore = writtenBytes();
    const std::int64_t bytesBefore = storeBytes(storeDir);
    const auto secondStarted = Clock::now();
    pull(second);
    ::sync();
    secondS.push_back(std::chrono::duration<double>(Clock::now() - secondStarted).count());
    writtenMiB.push_back(static_cast<double>(writtenBytes() - writtenBefore) / kMiB);
    growthMiB.push_back(static_cast<double>(storeBytes(storeDir) - bytesBefore) / kMiB);
    auto info = (*store)->get(image(second));
    info.waitFor(std::chrono::minutes(5));
    baseOnDiskMiB.push_back(info.isReady() ? static_cast<double>(storeBytes(info.get().layers[0])) / kMiB : -1);
    std::printf("bench_dedup: run %d: first %.3f s, second %.3f s (with its sync), wrote %.1f MiB, store +%.1f MiB\n",
                run + 1, firstS.back(), secondS.back(), writtenMiB.back(), growthMiB.back());
    std::fflush(stdout);
    store->reset();
  }
  fs::remove_all(dir / "store");
  using prov::bench::median;
  std::printf(
      "{\"runs\":%d,\"shared_mib\":%zu,\"base_mib\":%zu,\"first_pull_s\":%.3f,\"second_pull_s\":%.3f,"
      "\"second_written_mib\":%.1f,\"second_store_growth_mib\":%.1f,\"second_base_mib\":%.1f}\n",
      runs, sharedMiB, baseMiB, median(firstS), median(secondS), median(writtenMiB), median(growthMiB),
      median(baseOnDiskMiB));
  return 0;
}
