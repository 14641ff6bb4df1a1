// bench_growth: how the main costs grow with what one embedded Provisioner
// holds.
//
//   build/bin/bench_growth [--dir=/tmp/bench-growth] [--containers=10,1000,10000]
//                          [--layers=1,10,100,400] [--images=10,1000] [--runs=3]
//
// Needs root. Runs in a mount namespace of its own (every mount it makes goes
// with it). Images come from OCI layouts under --dir (testkit), so no
// registry's cost is in the figures; the store does not sync layers (this
// is about growth, not durability). With the default backend (overlay
// here):
//   containers  the work dir grows to each count of --containers (all from
//               one small image); at each, a new Provisioner over it times
//               recover() (all of them known), containers(), five more
//               containers provisioned one at a time and then destroyed
//               (provision_one, destroy_one: the median of each), and the
//               heap in use (mallinfo2, every arena) and resident memory
//               beside the first one's are the provisioner's own
//               (heap_mib_added, resident_mib_added: the latter counts
//               malloc's fragments too);
//   layers      an image of N one-file layers provisioned and destroyed,
//               --runs times, for each N of --layers (the pull is not timed);
//   images      the store grows to each count of --images one-layer images;
//               at each, images() and then prune (every image unused, so
//               every one goes; the store is filled again after).
// Each figure is the median of --runs, in milliseconds, with per_item, the
// figure over the count, beside it: flat per_item is linear growth. The last
// line printed is one JSON object of them all.

#include <malloc.h>
#include <sched.h>
#include <sys/mount.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "bench/options.hpp"
#include "fetcher/local/local.hpp"
#include "fetcher/puller.hpp"
#include "provisioner/provisioner.hpp"
#include "store/image_store.hpp"
#include "testkit/image_builder.hpp"

namespace {

namespace fs = std::filesystem;
using namespace prov;
using SteadyClock = std::chrono::steady_clock;

std::vector<std::size_t> counts(const std::string& list) {
  std::vector<std::size_t> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoul(item));
  return out;
}

// Waits for `f`; throws its failure.
template <typename T>
T await(actors::Future<T> f, const std::string& what) {
  f.waitFor(std::chrono::minutes(30));
  if (!f.isReady()) throw std::runtime_error(what + ": " + (f.isFailed() ? f.failure().message : "not done"));
  return f.get();
}

// Milliseconds `fn` takes.
double timedMs(const std::function<void()>& fn) {
  const auto start = SteadyClock::now();
  fn();
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
}

// Bytes malloc has handed out and not had back, over every arena.
double heapInUseMib() { return static_cast<double>(::mallinfo2().uordblks) / (1024.0 * 1024.0); }

// Resident memory, after giving back to the kernel what malloc holds free
// (what provisioners before this one left would count otherwise; the
// fragments it cannot give back still count).
double residentMib() {
  ::malloc_trim(0);
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

// An image of `layers` one-file layers in its own OCI layout.
messages::Image layoutImage(const fs::path& dir, std::size_t layers, const std::string& marker) {
  testing::ImageSpec spec;
  spec.architecture = fetcher::hostPlatform().architecture();
  for (std::size_t l = 0; l < layers; ++l) {
    spec.layers.push_back({testing::TarEntry::file("l" + std::to_string(l), marker + " " + std::to_string(l))});
  }
  testing::OciLayout layout(dir);
  layout.tag(layout.addImage(spec), "v1");
  messages::Image image;
  image.set_type(messages::Image::OCI_LAYOUT);
  image.set_path(dir.string());
  image.set_layout_tag("v1");
  return image;
}

class Bench {
 public:
  Bench(fs::path dir, bool overlayView) : dir_(std::move(dir)), overlayView_(overlayView) {
    auto puller = fetcher::OciLayoutPuller::create(runtime_);
    if (puller.isError()) throw std::runtime_error(puller.error().message);
    puller_ = std::shared_ptr<fetcher::Puller>(std::move(*puller));
  }

  // A Provisioner over `workDir`, recovered with `known`; the recover's
  // milliseconds in `recoverMs`.
  std::unique_ptr<provisioner::Provisioner> open(const fs::path& workDir, const std::set<std::string>& known,
                                                 double* recoverMs = nullptr) {
    provisioner::Provisioner::Parts parts;
    parts.workDir = workDir.string();
    store::ImageStoreOptions options;
    options.storeDir = (workDir / "store/docker").string();
    options.syncLayers = false;
    options.limits.maxImageLayers = 1000;  // the default, 128, would refuse the 400-layer image
    auto puller = puller_;
    auto store = store::ImageStore::create(runtime_, options, [puller](const messages::Image&) { return puller; });
    if (store.isError()) throw std::runtime_error(store.error().message);
    parts.stores[store::kDockerProvider] = std::move(*store);
    parts.backends = backend::createBackends(runtime_,
                                             {.overlayViewRoot = overlayView_ ? workDir.string() : std::string()});
    parts.defaultBackend = backend::defaultBackend(workDir.string());
    auto created = provisioner::Provisioner::create(std::move(parts), runtime_);
    if (created.isError()) throw std::runtime_error(created.error().message);
    const double ms = timedMs([&] { await((*created)->recover(known), "recover"); });
    if (recoverMs) *recoverMs = ms;
    return std::move(*created);
  }

  const fs::path& dir() const { return dir_; }

 private:
  actors::Runtime runtime_;
  fs::path dir_;
  std::shared_ptr<fetcher::Puller> puller_;
  bool overlayView_;
};

struct Row {
  std::string name;  // "recover", "containers", ...
  std::size_t count;
  double ms;
};

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string dir = "/tmp/bench-growth", containerList = "10,1000,10000", layerList = "1,10,100,400",
              imageList = "10,1000";
  int runs = 3;
  bool overlayView = true;
  po::options_description options("bench_growth: how recover, containers, provision, images and prune grow");
  options.add_options()("dir", po::value(&dir)->default_value(dir), "work directory (emptied first)")(
      "containers", po::value(&containerList)->default_value(containerList), "container counts")(
      "layers", po::value(&layerList)->default_value(layerList), "layer counts of the images provisioned")(
      "images", po::value(&imageList)->default_value(imageList), "image counts in the store")(
      "runs", po::value(&runs)->default_value(runs), "timed runs per figure (the median is kept)")(
      "overlay_view", po::value(&overlayView)->default_value(overlayView),
      "overlay names layers through a detached copy of the work dir's mount (BackendOptions::overlayViewRoot)");
  po::variables_map vm;
  if (auto exit = bench::parseOptions(argc, argv, options, vm)) return *exit;
  if (runs < 1) {
    std::fprintf(stderr, "error: --runs must be at least 1\n");
    return 1;
  }
  // Every mount made here goes with this process.
  if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    std::perror("error: a mount namespace of its own (needs root)");
    return 1;
  }
  std::vector<Row> rows;
  double residentAdded = 0, heapAdded = 0;
  std::size_t residentCount = 0;
  try {
    fs::remove_all(dir);
    fs::create_directories(dir);
    Bench bench(dir, overlayView);
    const double baseMib = residentMib(), baseHeapMib = heapInUseMib();

    // Containers.
    {
      const fs::path work = bench.dir() / "containers";
      const messages::Image small = layoutImage(bench.dir() / "small", 2, "small");
      std::set<std::string> ids;
      for (std::size_t target : counts(containerList)) {
        {
          auto p = bench.open(work, ids);
          std::vector<actors::Future<provisioner::ProvisionInfo>> made;
          for (std::size_t i = ids.size(); i < target; ++i) {
            ids.insert("c" + std::to_string(i));
            made.push_back(p->provision("c" + std::to_string(i), small));
          }
          for (auto& f : made) await(f, "provision");
        }
        std::vector<double> recovers, lists, ones, destroys;
        for (int r = 0; r < runs; ++r) {
          double recoverMs = 0;
          auto p = bench.open(work, ids, &recoverMs);
          recovers.push_back(recoverMs);
          lists.push_back(timedMs([&] { await(p->containers(), "containers"); }));
          for (int k = 0; k < 5; ++k) {
            const std::string extra = "extra" + std::to_string(r) + "-" + std::to_string(k);
            ones.push_back(timedMs([&] { await(p->provision(extra, small), "provision"); }));
          }
          for (int k = 0; k < 5; ++k) {
            const std::string extra = "extra" + std::to_string(r) + "-" + std::to_string(k);
            destroys.push_back(timedMs([&] { await(p->destroy(extra), "destroy"); }));
          }
          if (r == 0) {
            residentAdded = residentMib() - baseMib;
            heapAdded = heapInUseMib() - baseHeapMib;
            residentCount = target;
          }
        }
        rows.push_back({"recover", target, bench::median(recovers)});
        rows.push_back({"containers", target, bench::median(lists)});
        rows.push_back({"provision_one", target, bench::median(ones)});
        rows.push_back({"destroy_one", target, bench::median(destroys)});
        std::printf(
            "  %zu containers: recover %.1f ms, containers %.1f ms, one more provisioned %.2f ms and destroyed "
            "%.2f ms\n",
            target, bench::median(recovers), bench::median(lists), bench::median(ones), bench::median(destroys));
        std::fflush(stdout);
      }
      auto p = bench.open(work, ids);
      std::vector<actors::Future<bool>> gone;
      for (const auto& id : ids) gone.push_back(p->destroy(id));
      for (auto& f : gone) await(f, "destroy");
    }

    // Layers.
    {
      const fs::path work = bench.dir() / "layers";
      auto p = bench.open(work, {});
      for (std::size_t layers : counts(layerList)) {
        const auto image = layoutImage(bench.dir() / ("layers" + std::to_string(layers)), layers, "layers");
        await(p->pullImage(image), "pull");
        std::vector<double> ms;
        for (int r = 0; r < runs; ++r) {
          const std::string id = "l" + std::to_string(layers) + "-" + std::to_string(r);
          ms.push_back(timedMs([&] { await(p->provision(id, image), "provision"); }));
          await(p->destroy(id), "destroy");
        }
        rows.push_back({"provision_layers", layers, bench::median(ms)});
        std::printf("  %zu layers: provision %.1f ms\n", layers, bench::median(ms));
        std::fflush(stdout);
      }
    }

    // Images.
    {
      const fs::path work = bench.dir() / "images";
      auto p = bench.open(work, {});
      std::vector<messages::Image> images;
      for (std::size_t target : counts(imageList)) {
        while (images.size() < target) {
          images.push_back(layoutImage(bench.dir() / ("image" + std::to_string(images.size())), 1,
                                       "image " + std::to_string(images.size())));
        }
        std::vector<double> lists, prunes;
        for (int r = 0; r < runs; ++r) {
          std::vector<actors::Future<messages::StoredImage>> pulled;
          for (std::size_t i = 0; i < target; ++i) pulled.push_back(p->pullImage(images[i]));
          for (auto& f : pulled) await(f, "pull");
          lists.push_back(timedMs([&] {
            if (await(p->images(), "images").size() != target) throw std::runtime_error("images() missed some");
          }));
          prunes.push_back(timedMs([&] { await(p->pruneImages({}), "prune"); }));
        }
        rows.push_back({"images", target, bench::median(lists)});
        rows.push_back({"prune", target, bench::median(prunes)});
        std::printf("  %zu images: images %.1f ms, prune %.1f ms\n", target, bench::median(lists),
                    bench::median(prunes));
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }

  std::printf("\n| figure | count | median ms | ms per item |\n|---|---|---|---|\n");
  std::string json = "{";
  for (const auto& row : rows) {
    const double perItem = row.ms / static_cast<double>(row.count);
    std::printf("| %s | %zu | %.2f | %.4f |\n", row.name.c_str(), row.count, row.ms, perItem);
    char entry[160];
    std::snprintf(entry, sizeof entry, "%s\"%s_%zu_ms\":%.3f", json.size() > 1 ? "," : "", row.name.c_str(), row.count,
                  row.ms);
    json += entry;
  }
  std::printf("memory added by a provisioner holding %zu containers: heap in use %.1f MiB, resident %.1f MiB\n",
              residentCount, heapAdded, residentAdded);
  char tail[128];
  std::snprintf(tail, sizeof tail, ",\"heap_mib_added\":%.1f,\"resident_mib_added\":%.1f,\"resident_containers\":%zu}",
                heapAdded, residentAdded, residentCount);
  std::printf("%s%s\n", json.c_str(), tail);
  return 0;
}
