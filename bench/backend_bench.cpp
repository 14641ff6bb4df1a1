// bench_backend: rootfs backends on a 5-layer image built from real trees.
//
//   build/bin/bench_backend [--runs=3] [--pairs=1000] [--scratch=DIR] [--keep]
//
// The image (~400 MB: /usr/lib/python3.11, /usr/include/boost,
// /usr/share/man, /usr/share/perl + /usr/lib/git-core, /usr/share/vim plus
// whiteouts, an opaque directory, hardlinks and symlinks in the top layer)
// is built on a scratch ext4 file system that the benchmark makes on a loop
// device (this machine's root file system is ext4 without a journal, where
// creating many files soon after deleting many is slow and erratic), unless
// --scratch names a directory to use instead.
//
// Figures:
//   overlay_provisions_per_s   overlay provision+destroy pairs per second,
//                              --pairs of them with 64 in flight (and, as
//                              overlay_provisions_per_s_2, with 2 in flight);
//                              medians of --runs
//   overlay_volatile_...       the same with BackendOptions::overlayVolatile,
//                              in turn with the default in each run
//   floor_pairs_per_s, ..._2   the floor: the same pairs' system calls (the
//                              directories, fsopen .. move_mount, propagation,
//                              umount2, the scratch's removal) from 64 and 2
//                              plain threads, with nothing of ours around
//                              them (bench/provision_floor.hpp), in the same
//                              runs; floor_volatile_pairs_per_s[_2] with
//                              'volatile'
//   overlay_vs_floor[_2]       overlay_provisions_per_s[_2] / floor_pairs_per_s[_2]
//   copy_s / cp_a_s            median seconds of the copy backend applying
//                              the 5 layers, and of `cp -a --remove-destination`
//                              (needed to put a whiteout device over a lower
//                              file) of the same layers one after another into
//                              a fresh dir, in
//                              the same run, alternating, `sync` before each
//   copy_ratio_vs_cp           copy_s / cp_a_s (below 1: faster than cp -a)
// The last line printed is one JSON object.

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "actors/actors.hpp"
#include "actors/fs.hpp"
#include "backend/backend.hpp"
#include "bench/options.hpp"
#include "bench/provision_floor.hpp"

namespace {

namespace fs = std::filesystem;
using namespace prov;
using SteadyClock = std::chrono::steady_clock;

void run(const std::string& command) {
  if (std::system(command.c_str()) != 0) {
    std::fprintf(stderr, "bench_backend: command failed: %s\n", command.c_str());
    std::exit(1);
  }
}

double seconds(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

// Copies real trees into five layer directories and gives the top layer the
// shapes an image has: whiteouts, an opaque directory, hardlinks, symlinks.
std::vector<std::string> buildImage(const std::string& root) {
  const std::vector<std::vector<std::string>> sources = {
      {"/usr/lib/python3.11"}, {"/usr/include/boost"}, {"/usr/share/man"}, {"/usr/share/perl", "/usr/lib/git-core"},
      {"/usr/share/vim"},
  };
  std::vector<std::string> layers;
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const std::string layer = root + "/layers/" + std::to_string(i);
    fs::create_directories(layer);
    for (const auto& source : sources[i]) {
      if (!fs::exists(source)) {
        std::fprintf(stderr, "bench_backend: %s is missing; the image is smaller\n", source.c_str());
        continue;
      }
      const std::string parent = layer + fs::path(source).parent_path().string();
      fs::create_directories(parent);
      run("cp -a '" + source + "' '" + parent + "/'");
    }
    layers.push_back(layer);
  }
  const std::string top = layers.back();
  // Whiteouts of lower files and directories, and an opaque directory.
  fs::create_directories(top + "/usr/lib/python3.11");
  // Files only: `cp -a`, the baseline, cannot put a device over a directory.
  for (const char* name : {"os.py", "abc.py", "ast.py"}) {
    const std::string wh = top + "/usr/lib/python3.11/" + name;
    if (::mknod(wh.c_str(), S_IFCHR, makedev(0, 0)) != 0) std::perror("mknod");
  }
  fs::create_directories(top + "/usr/share/man/man1");
  if (::setxattr((top + "/usr/share/man/man1").c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
    std::perror("setxattr");
  }
  run("echo replaced > '" + top + "/usr/share/man/man1/only-page.1'");
  // Hardlinks and symlinks.
  fs::create_directories(top + "/links");
  run("seq 1 200 | sed 's/^/line /' > '" + top + "/links/original'");
  for (int i = 0; i < 100; ++i) {
    fs::create_hard_link(top + "/links/original", top + "/links/hard" + std::to_string(i));
    fs::create_symlink("original", top + "/links/soft" + std::to_string(i));
  }
  return layers;
}

struct Scratch {
  std::string dir;
  std::string image;  // loop image, when we made one
};

Scratch makeScratch(const std::string& requested) {
  if (!requested.empty()) {
    fs::create_directories(requested + "/bench-backend");
    return {requested + "/bench-backend", ""};
  }
  Scratch s{"/tmp/bench-backend-mnt", "/tmp/bench-backend.img"};
  run("umount -l " + s.dir + " 2>/dev/null; rm -f " + s.image + "; truncate -s 8G " + s.image + " && mkfs.ext4 -q -F " +
      s.image + " && mkdir -p " + s.dir + " && mount -o loop " + s.image + " " + s.dir);
  return s;
}

void removeScratch(const Scratch& s) {
  if (s.image.empty()) {
    (void)actors::fs::removeTree(s.dir);
    return;
  }
  run("umount " + s.dir + " && rm -f " + s.image + " && rmdir " + s.dir);
}

// `pairs` provision+destroy pairs through `backend`, `inFlight` at a time.
double overlayPairsPerSecond(backend::Backend& overlay, const std::string& root, const std::vector<std::string>& layers,
                             int pairs, int inFlight) {
  const std::string rootfses = root + "/rootfses";
  const std::string backendDir = root + "/overlay-backend";
  fs::create_directories(rootfses);
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  actors::Promise<actors::Nothing> done;
  std::atomic<int> chainsLeft{inFlight};
  std::function<void()> step = [&] {
    const int i = next.fetch_add(1);
    if (i >= pairs) {
      if (chainsLeft.fetch_sub(1) == 1) done.set(actors::Nothing{});
      return;
    }
    const std::string rootfs = rootfses + "/r" + std::to_string(i);
    overlay.provision(layers, rootfs, backendDir)
        .then([&, rootfs](const backend::RootfsInfo&) { return overlay.destroy(rootfs, backendDir); })
        .onAny([&](const actors::Future<bool>& f) {
          if (!f.isReady() || !f.get()) {
            if (failures.fetch_add(1) == 0 && f.isFailed()) {
              std::fprintf(stderr, "bench_backend: %s\n", f.failure().message.c_str());
            }
          }
          step();
        });
  };
  const auto start = SteadyClock::now();
  for (int c = 0; c < inFlight; ++c) step();
  done.future().waitFor(std::chrono::minutes(10));
  const double elapsed = seconds(start);
  if (failures.load() != 0) {
    std::fprintf(stderr, "bench_backend: %d overlay pairs failed\n", failures.load());
    std::exit(1);
  }
  return pairs / elapsed;
}

double copyBackendSeconds(backend::Backend& copy, const std::vector<std::string>& layers, const std::string& rootfs) {
  ::sync();
  const auto start = SteadyClock::now();
  auto provisioned = copy.provision(layers, rootfs, rootfs + "-backend");
  provisioned.waitFor(std::chrono::minutes(10));
  const double elapsed = seconds(start);
  if (!provisioned.isReady()) {
    std::fprintf(stderr, "bench_backend: copy failed: %s\n",
                 provisioned.isFailed() ? provisioned.failure().message.c_str() : "timeout");
    std::exit(1);
  }
  auto destroyed = copy.destroy(rootfs, rootfs + "-backend");
  destroyed.waitFor(std::chrono::minutes(10));
  return elapsed;
}

double cpSeconds(const std::vector<std::string>& layers, const std::string& target) {
  fs::create_directories(target);
  ::sync();
  std::string command;
  for (const auto& layer : layers) {
    command += (command.empty() ? "" : " && ") + std::string("cp -a --remove-destination '") + layer + "/.' '" +
               target + "/'";
  }
  const auto start = SteadyClock::now();
  run(command);
  const double elapsed = seconds(start);
  (void)actors::fs::removeTree(target);
  return elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  int runs = 3;
  int pairs = 1000;
  std::string scratchDir;
  po::options_description options("bench_backend: rootfs backends on a 5-layer image; last line is JSON");
  options.add_options()("runs", po::value<int>(&runs)->default_value(3),
                        "copy and cp -a runs (the median is reported)")(
      "pairs", po::value<int>(&pairs)->default_value(1000), "overlay provision+destroy pairs per figure")(
      "scratch", po::value<std::string>(&scratchDir), "directory to work in (default: a fresh ext4 on a loop device)")(
      "keep", "keep the scratch file system for inspection");
  po::variables_map vm;
  if (auto exit = prov::bench::parseOptions(argc, argv, options, vm)) return *exit;
  if (runs < 1 || pairs < 1) {
    std::cerr << "error: --runs and --pairs must be at least 1\n";
    return 1;
  }
  if (::geteuid() != 0) {
    std::cerr << "error: bench_backend mounts file systems and must run as root\n";
    return 1;
  }

  Scratch scratch = makeScratch(scratchDir);
  std::printf("bench_backend: building the image in %s\n", scratch.dir.c_str());
  const std::vector<std::string> layers = buildImage(scratch.dir);
  run("du -sh " + scratch.dir + "/layers | sed 's/^/bench_backend: image size /'");

  actors::Runtime runtime;
  auto overlay = backend::createBackend(runtime, backend::kOverlay);
  auto volatileOverlay = backend::createBackend(runtime, backend::kOverlay, {.overlayVolatile = true});
  auto copy = backend::createBackend(runtime, backend::kCopy);
  if (overlay.isError() || copy.isError() || volatileOverlay.isError()) {
    std::cerr << "error: "
              << (overlay.isError() ? overlay.error()
                  : copy.isError()  ? copy.error()
                                    : volatileOverlay.error())
                     .message
              << "\n";
    return 1;
  }

  // Each figure once per run, the default and the volatile mount in turn,
  // each after a sync (what one left unwritten is not the next one's cost).
  std::vector<double> o2, o64, v2, v64;
  auto pairsPerSecond = [&](backend::Backend& b, int inFlight) {
    ::sync();
    return overlayPairsPerSecond(b, scratch.dir, layers, pairs, inFlight);
  };
  // The floor names the layers uppermost first, as the backend hands them
  // to lowerdir+.
  const std::vector<std::string> floorLayers(layers.rbegin(), layers.rend());
  std::vector<double> f2, f64, fv2, fv64;
  auto floorPerSecond = [&](int threads, bool isVolatile) {
    ::sync();
    auto floor = bench::pairsFloor(scratch.dir, floorLayers, static_cast<std::size_t>(pairs),
                                   static_cast<std::size_t>(threads), isVolatile);
    if (floor.isError()) {
      std::fprintf(stderr, "bench_backend: the floor failed: %s\n", floor.error().message.c_str());
      std::exit(1);
    }
    return *floor;
  };
  for (int i = 0; i < runs; ++i) {
    o2.push_back(pairsPerSecond(**overlay, 2));
    f2.push_back(floorPerSecond(2, false));
    v2.push_back(pairsPerSecond(**volatileOverlay, 2));
    fv2.push_back(floorPerSecond(2, true));
    o64.push_back(pairsPerSecond(**overlay, 64));
    f64.push_back(floorPerSecond(64, false));
    v64.push_back(pairsPerSecond(**volatileOverlay, 64));
    fv64.push_back(floorPerSecond(64, true));
    std::printf(
        "run %d: overlay pairs/s, 2 in flight %.0f (floor %.0f; volatile %.0f, floor %.0f), 64 in flight %.0f "
        "(floor %.0f; volatile %.0f, floor %.0f)\n",
        i + 1, o2.back(), f2.back(), v2.back(), fv2.back(), o64.back(), f64.back(), v64.back(), fv64.back());
  }
  const double overlay2 = bench::median(o2), overlay64 = bench::median(o64);
  const double volatile2 = bench::median(v2), volatile64 = bench::median(v64);
  const double floor2 = bench::median(f2), floor64 = bench::median(f64);
  const double floorVolatile2 = bench::median(fv2), floorVolatile64 = bench::median(fv64);
  std::printf("overlay provision+destroy, 2 in flight:  %8.0f /s, floor %.0f /s (volatile %.0f /s, floor %.0f /s)\n",
              overlay2, floor2, volatile2, floorVolatile2);
  std::printf("overlay provision+destroy, 64 in flight: %8.0f /s, floor %.0f /s (volatile %.0f /s, floor %.0f /s)\n",
              overlay64, floor64, volatile64, floorVolatile64);

  std::vector<double> copyTimes, cpTimes;
  for (int i = 0; i < runs; ++i) {
    copyTimes.push_back(copyBackendSeconds(**copy, layers, scratch.dir + "/copy-rootfs"));
    cpTimes.push_back(cpSeconds(layers, scratch.dir + "/cp-rootfs"));
    std::printf("run %d: copy backend %.2f s, cp -a %.2f s\n", i + 1, copyTimes.back(), cpTimes.back());
  }
  const double copyS = bench::median(copyTimes);
  const double cpS = bench::median(cpTimes);
  std::printf("copy backend %.2f s (min %.2f, max %.2f); cp -a %.2f s (min %.2f, max %.2f)\n", copyS,
              *std::min_element(copyTimes.begin(), copyTimes.end()),
              *std::max_element(copyTimes.begin(), copyTimes.end()), cpS,
              *std::min_element(cpTimes.begin(), cpTimes.end()), *std::max_element(cpTimes.begin(), cpTimes.end()));

  overlay->reset();
  volatileOverlay->reset();
  copy->reset();
  if (!vm.count("keep")) removeScratch(scratch);
  std::printf(
      "{\"overlay_provisions_per_s\": %.0f, \"overlay_provisions_per_s_2\": %.0f, "
      "\"overlay_volatile_provisions_per_s\": %.0f, \"overlay_volatile_provisions_per_s_2\": %.0f, "
      "\"floor_pairs_per_s\": %.0f, \"floor_pairs_per_s_2\": %.0f, \"floor_volatile_pairs_per_s\": %.0f, "
      "\"floor_volatile_pairs_per_s_2\": %.0f, \"overlay_vs_floor\": %.2f, \"overlay_vs_floor_2\": %.2f, "
      "\"copy_s\": %.3f, \"cp_a_s\": %.3f, \"copy_ratio_vs_cp\": %.3f, \"runs\": %d, \"pairs\": %d}\n",
      overlay64, overlay2, volatile64, volatile2, floor64, floor2, floorVolatile64, floorVolatile2, overlay64 / floor64,
      overlay2 / floor2, copyS, cpS, copyS / cpS, runs, pairs);
  return 0;
}
