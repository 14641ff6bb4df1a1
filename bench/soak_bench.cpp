// bench_soak: random pulls, provisions, destroys and prunes in a child
// process that the driver kills with SIGKILL at random moments; each new
// child recovers and checks the invariants before it goes on.
//
//   build/bin/bench_soak [--trials=500] [--seed=1] [--max_kill_ms=300] [--dir=/tmp/bench-soak]
//
// Needs root (overlay, bind) and Debian's docker-registry and skopeo. The
// driver starts the registry on a free 127.0.0.1 port, pushes five small
// images that share layers (one of a single layer, for the bind backend),
// then runs --trials children over one work dir. Each child:
//   - builds a Provisioner whose default backend is the trial's (copy,
//     overlay, bind in turn; bind refuses multi-layer images, an expected
//     error), recovers it with the containers the driver chose as known (a
//     random subset of those on disk), and checks:
//       * every container the records list has its rootfses, each with
//         exactly its image's files and contents;
//       * no mount under the work dir but those rootfses, no staging entry,
//         no container directory without a record;
//       * every image the index lists has every layer, each exactly the
//         files and contents of that layer (a truncated file is a violation);
//   - then runs random operations, three at a time, until it is killed
//     (the driver kills it a random 0..max_kill_ms after it reports the
//     check done; one trial in five, that long after it started, so some
//     kills land in the middle of a recovery).
// A last child checks, destroys every container, prunes every image, and
// measures the store: the bytes of files left in it (the image index
// aside) must be what an empty store has, 0.
//
// The last line printed is one JSON object:
//   {"trials":..,"kills":..,"operations":..,"violations":..,"seconds":..,"seed":..}
// and each violation is printed before it, on a line of its own.

#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "actors/actors.hpp"
#include "backend/backend.hpp"
#include "bench/options.hpp"
#include "bench/registry.hpp"
#include "fetcher/manifest.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "provisioner/paths.hpp"
#include "provisioner/provisioner.hpp"
#include "store/image_store.hpp"
#include "store/paths.hpp"
#include "testkit/files.hpp"
#include "testkit/image_builder.hpp"

namespace {

namespace fs = std::filesystem;
using namespace prov;
using Files = std::map<std::string, std::string>;  // path -> content
using SteadyClock = std::chrono::steady_clock;

constexpr int kImages = 5;
const char* const kBackends[] = {backend::kCopy, backend::kOverlay, backend::kBind};

// ---- the images: what each layer holds --------------------------------------

Files layerFiles(const std::string& name) {
  Files files;
  if (name == "base") {
    files["etc/os"] = "soak";
    files["bin/tool"] = std::string(64 * 1024, 't');
  } else {
    files["layer/" + name] = name;
    files[name + "/data"] = std::string(8 * 1024 + name.size(), name.back());
  }
  return files;
}

// Image i: base; a middle layer shared by pairs; its own top. Image 4 is
// the base alone.
std::vector<std::string> layersOf(int image) {
  if (image == 4) return {"base"};
  return {"base", image < 2 ? "mid0" : "mid1", "top" + std::to_string(image)};
}

Files imageFiles(int image) {
  Files all;
  for (const auto& layer : layersOf(image)) all.merge(layerFiles(layer));
  return all;
}

std::string repoOf(int image) { return "soak/img" + std::to_string(image); }

messages::Image imageRef(const std::string& hostPort, int image) {
  messages::Image ref;
  ref.set_type(messages::Image::DOCKER);
  *ref.mutable_reference() = *fetcher::parseImageReference(hostPort + "/" + repoOf(image) + ":latest");
  return ref;
}

// Which image a stored key is, or -1.
int imageOfKey(const std::string& key) {
  for (int i = 0; i < kImages; ++i) {
    if (key.find("/" + repoOf(i) + ":") != std::string::npos) return i;
  }
  return -1;
}

bool pushImages(const testing::RealRegistry& registry, const fs::path& dir) {
  for (int i = 0; i < kImages; ++i) {
    testing::ImageSpec spec;
    spec.architecture = fetcher::hostPlatform().architecture();
    for (const auto& layer : layersOf(i)) {
      std::vector<testing::TarEntry> entries;
      for (const auto& [path, content] : layerFiles(layer)) entries.push_back(testing::TarEntry::file(path, content));
      spec.layers.push_back(entries);
    }
    testing::OciLayout layout(dir / ("layout" + std::to_string(i)));
    layout.tag(layout.addImage(spec), "latest");
    auto pushed = registry.push("oci:" + layout.dir().string() + ":latest", repoOf(i) + ":latest", "oci");
    if (pushed.status != 0) {
      std::fprintf(stderr, "error: pushing %s failed: %s\n", repoOf(i).c_str(), pushed.output.c_str());
      return false;
    }
  }
  return true;
}

// ---- the child ----------------------------------------------------------------

struct Child {
  actors::Runtime& runtime;
  fs::path workDir;
  std::string hostPort;
  std::unique_ptr<provisioner::Provisioner> provisioner;

  void violation(const std::string& what) const { std::printf("violation: %s\n", what.c_str()); }

  template <typename T>
  bool wait(const actors::Future<T>& f) const {
    return f.waitFor(std::chrono::minutes(2)) && f.isReady();
  }

  // Regular files below `dir` with their contents (symlinks and dirs aside).
  static Files filesUnder(const fs::path& dir) {
    Files files;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_regular_file() && !it->is_symlink()) {
        files[fs::relative(it->path(), dir).string()] = testing::readFile(it->path());
      }
    }
    return files;
  }

  void expectFiles(const fs::path& dir, const Files& expected, const std::string& what) const {
    const Files found = filesUnder(dir);
    if (found == expected) return;
    std::string diff;
    for (const auto& [path, content] : expected) {
      auto it = found.find(path);
      if (it == found.end()) diff += " missing " + path + ";";
      else if (it->second != content) diff += " " + path + " has " + std::to_string(it->second.size()) + " bytes;";
    }
    for (const auto& [path, content] : found) {
      if (!expected.count(path)) diff += " extra " + path + ";";
    }
    violation(what + " '" + dir.string() + "':" + diff);
  }

  // Every container directory below `dir` (nested ones too), as ids.
  static void containerDirs(const fs::path& dir, const std::string& prefix, std::set<std::string>& ids) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir / "containers", ec)) {
      const std::string id = prefix + entry.path().filename().string();
      ids.insert(id);
      containerDirs(entry.path(), id + "/", ids);
    }
  }

  void check() {
    auto containers = provisioner->containers();
    if (!wait(containers)) return violation("containers() did not answer");
    std::set<std::string> mounts, listed;
    const std::string root = provisioner::paths::root(workDir.string());
    for (const auto& c : containers.get()) {
      listed.insert(c.id);
      const std::string dir = provisioner::paths::container(root, c.id);
      for (const auto& r : c.rootfses) {
        const std::string rootfs = provisioner::paths::rootfs(dir, r.backend(), r.id());
        mounts.insert(rootfs);
        const int image = imageOfKey(r.image_key());
        if (!fs::exists(rootfs)) {
          violation("container " + c.id + ": rootfs " + rootfs + " is missing");
        } else if (image >= 0) {
          expectFiles(rootfs, imageFiles(image), "container " + c.id + ": rootfs");
        }
      }
    }
    for (const auto& mount : testing::mountsUnder(workDir)) {
      if (!mounts.count(mount)) violation("orphan mount " + mount);
    }
    std::set<std::string> onDisk;
    containerDirs(root, "", onDisk);
    for (const auto& id : onDisk) {
      if (!listed.count(id)) violation("container directory without a record: " + id);
    }
    const std::string store = provisioner::paths::dockerStore(workDir.string());
    for (const auto& entry : testing::treeOf(store::paths::staging(store))) {
      violation("staging leftover " + entry);
    }
    auto images = provisioner->images();
    if (!wait(images)) return violation("images() did not answer");
    for (const auto& stored : images.get()) {
      const int image = imageOfKey(stored.key());
      if (image < 0) continue;
      const auto layers = layersOf(image);
      if (static_cast<std::size_t>(stored.layer_ids_size()) != layers.size()) {
        violation("image " + stored.key() + " lists " + std::to_string(stored.layer_ids_size()) + " layers");
        continue;
      }
      for (std::size_t i = 0; i < layers.size(); ++i) {
        expectFiles(store::paths::layerRootfs(store, stored.layer_ids(static_cast<int>(i))), layerFiles(layers[i]),
                    "image " + stored.key() + ": layer");
      }
    }
  }

  // Random operations, three at a time, until killed or `limit` are done.
  void churn(std::mt19937& random, long limit) {
    long next = 0;
    auto pick = [&](int n) { return static_cast<int>(random() % static_cast<unsigned>(n)); };
    for (long done = 0; limit < 0 || done < limit;) {
      auto containers = provisioner->containers();
      if (!wait(containers)) return;
      std::vector<std::string> ids;
      for (const auto& c : containers.get()) ids.push_back(c.id);
      std::vector<std::pair<std::string, actors::Future<actors::Nothing>>> ops;
      for (int k = 0; k < 3; ++k) {
        const int roll = pick(100);
        const messages::Image image = imageRef(hostPort, pick(kImages));
        auto nothing = [](const auto&) { return actors::Nothing{}; };
        if (roll < 15) {
          ops.emplace_back("pull", provisioner->pullImage(image).then(nothing));
        } else if (roll < 60 || ids.empty()) {
          std::string id = "c" + std::to_string(::getpid()) + "-" + std::to_string(next++);
          if (!ids.empty() && pick(3) == 0) id = ids[pick(static_cast<int>(ids.size()))] + "/" + id;
          ops.emplace_back("provision", provisioner->provision(id, image).then(nothing));
        } else if (roll < 90) {
          ops.emplace_back("destroy", provisioner->destroy(ids[pick(static_cast<int>(ids.size()))]).then(nothing));
        } else {
          std::vector<messages::Image> keep;
          for (int i = 0; i < kImages; ++i) {
            if (pick(2)) keep.push_back(imageRef(hostPort, i));
          }
          ops.emplace_back("prune", provisioner->pruneImages(keep));
        }
      }
      for (auto& [name, op] : ops) {
        op.waitFor(std::chrono::minutes(2));
        if (op.isFailed()) std::printf("failed %s: %s\n", name.c_str(), op.failure().message.c_str());
        std::printf("op %s\n", name.c_str());
        ++done;
      }
      std::fflush(stdout);
    }
  }

  // Destroys everything, prunes everything; the bytes of store files left
  // once the provisioner and its gc are gone, but for the store's own
  // bookkeeping: the index, the records-since mark and the recent commits
  // (a line per layer of the last minutes, removed layers or not).
  long long drain() {
    auto containers = provisioner->containers();
    if (wait(containers)) {
      for (const auto& c : containers.get()) {
        if (c.id.find('/') == std::string::npos && !wait(provisioner->destroy(c.id))) {
          violation("destroying " + c.id + " failed");
        }
      }
    }
    if (!wait(provisioner->pruneImages({}))) violation("the final prune failed");
    provisioner.reset();  // waits for the gc sweep
    long long bytes = 0;
    const fs::path store = provisioner::paths::dockerStore(workDir.string());
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(store, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      const bool bookkeeping = it->path() == store / "images" || it->path() == store / "records-since" ||
                               it->path() == store / "recent";
      if (it->is_regular_file() && !bookkeeping) {
        bytes += static_cast<long long>(it->file_size());
        violation("left in the store: " + it->path().string());
      }
    }
    return bytes;
  }
};

std::unique_ptr<provisioner::Provisioner> makeProvisioner(actors::Runtime& runtime, const fs::path& workDir,
                                                          const std::string& backendName) {
  auto registry = fetcher::RegistryPuller::create(runtime, fetcher::RegistryOptions{});
  if (registry.isError()) return nullptr;
  std::shared_ptr<fetcher::Puller> puller(std::move(*registry));
  provisioner::Provisioner::Parts parts;
  parts.workDir = workDir.string();
  store::ImageStoreOptions options;
  options.storeDir = provisioner::paths::dockerStore(workDir.string());
  auto store = store::ImageStore::create(runtime, options, [puller](const messages::Image&) { return puller; });
  if (store.isError()) {
    std::printf("violation: the store cannot be created: %s\n", store.error().message.c_str());
    return nullptr;
  }
  parts.stores[store::kDockerProvider] = std::move(*store);
  parts.backends = backend::createBackends(runtime, {.overlayViewRoot = workDir.string()});
  parts.defaultBackend = backendName;
  auto created = provisioner::Provisioner::create(std::move(parts), runtime);
  if (created.isError()) {
    std::printf("violation: the provisioner cannot be created: %s\n", created.error().message.c_str());
    return nullptr;
  }
  return std::move(*created);
}

int runChild(const std::string& workDir, const std::string& hostPort, const std::string& backendName,
             const std::string& known, unsigned seed, long ops, bool final) {
  actors::Runtime runtime;
  Child child{runtime, workDir, hostPort, makeProvisioner(runtime, workDir, backendName)};
  if (!child.provisioner) return 1;
  std::set<std::string> knownIds;
  std::stringstream parts(known);
  for (std::string id; std::getline(parts, id, ',');) {
    if (!id.empty()) knownIds.insert(id);
  }
  auto recovered = child.provisioner->recover(knownIds);
  if (!child.wait(recovered)) {
    child.violation("recover failed: " + (recovered.isFailed() ? recovered.failure().message : "no answer"));
    std::fflush(stdout);
    return 1;
  }
  child.check();
  std::printf("checked\n");
  std::fflush(stdout);
  if (final) {
    std::printf("store_bytes %lld\n", child.drain());
    return 0;
  }
  std::mt19937 random(seed);
  child.churn(random, ops);
  return 0;
}

// ---- the driver ----------------------------------------------------------------

struct Run {
  std::vector<std::string> violations;
  long operations = 0, errors = 0;
  std::map<std::string, long> errorKinds;  // failures by message, quotes left out
  bool killed = false;
  long long storeBytes = -1;
};

// Runs a child with `args`; kills it `killAfter` after its "checked" line
// (or after its start when `early`); never when killAfter is negative.
Run runOne(const std::vector<std::string>& args, std::chrono::milliseconds killAfter, bool early) {
  Run run;
  int out[2];
  if (::pipe(out) != 0) return run;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::close(out[1]);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  FILE* in = ::fdopen(out[0], "r");
  auto deadline = std::optional<SteadyClock::time_point>();
  if (killAfter.count() >= 0 && early) deadline = SteadyClock::now() + killAfter;
  std::thread killer;
  bool stop = false;
  std::mutex mutex;
  std::condition_variable wake;
  auto armKiller = [&](SteadyClock::time_point at) {
    killer = std::thread([&, at] {
      std::unique_lock lock(mutex);
      if (!wake.wait_until(lock, at, [&] { return stop; })) {
        ::kill(pid, SIGKILL);
        run.killed = true;
      }
    });
  };
  if (deadline) armKiller(*deadline);
  char line[4096];
  while (std::fgets(line, sizeof(line), in)) {
    std::string text(line);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    if (text.rfind("violation: ", 0) == 0) run.violations.push_back(text.substr(11));
    if (text.rfind("op ", 0) == 0) ++run.operations;
    if (text.rfind("failed ", 0) == 0) {
      ++run.errors;
      std::string kind;  // the message with what is quoted left out
      bool quoted = false;
      for (char c : text) {
        if (c == '\'') quoted = !quoted;
        if (!quoted && c != '\'') kind += c;
      }
      ++run.errorKinds[kind.substr(0, 160)];
    }
    if (text.rfind("store_bytes ", 0) == 0) run.storeBytes = std::stoll(text.substr(12));
    if (text == "checked" && killAfter.count() >= 0 && !early) armKiller(SteadyClock::now() + killAfter);
  }
  std::fclose(in);
  int status = 0;
  ::waitpid(pid, &status, 0);
  {
    std::lock_guard lock(mutex);
    stop = true;
  }
  wake.notify_all();
  if (killer.joinable()) killer.join();
  if (!run.killed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    run.violations.push_back("a child ended with status " + std::to_string(status) + " without being killed");
  }
  return run;
}

// Top-level containers on disk, a random subset of them.
std::string randomKnown(const fs::path& workDir, std::mt19937& random) {
  std::string known;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(workDir / "provisioner" / "containers", ec)) {
    if (random() % 2 == 0) known += (known.empty() ? "" : ",") + entry.path().filename().string();
  }
  return known;
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  long trials = 500, childOps = -1;
  unsigned seed = 1;
  int maxKillMs = 300;
  std::string dir = "/tmp/bench-soak", child, hostPort, backendName, known;
  bool final = false;
  po::options_description options("bench_soak: random operations, kill -9, recover, check; last line is JSON");
  options.add_options()("trials", po::value(&trials)->default_value(trials), "children to kill")(
      "seed", po::value(&seed)->default_value(seed), "random seed (the run is random, not replayable)")(
      "max_kill_ms", po::value(&maxKillMs)->default_value(maxKillMs), "the longest a child runs before the kill")(
      "dir", po::value(&dir)->default_value(dir),
      "work directory (removed first)")("child", po::value(&child), "internal: run as a child over this work dir")(
      "registry", po::value(&hostPort), "internal: the registry's host:port")("backend", po::value(&backendName),
                                                                              "internal: the child's default backend")(
      "known", po::value(&known), "internal: the containers the child recovers as known")(
      "ops", po::value(&childOps)->default_value(childOps), "internal: operations before the child exits")(
      "final", po::bool_switch(&final), "internal: check, destroy and prune everything, measure the store");
  po::variables_map vm;
  if (auto exit = bench::parseOptions(argc, argv, options, vm)) return *exit;
  if (!child.empty()) return runChild(child, hostPort, backendName, known, seed, childOps, final);
  if (::geteuid() != 0) {
    std::fprintf(stderr, "error: bench_soak needs root (overlay and bind mounts)\n");
    return 1;
  }

  const auto started = SteadyClock::now();
  auto registry = bench::freshRegistry(dir);
  if (!registry || !pushImages(*registry, dir)) return 1;
  const fs::path workDir = fs::path(dir) / "work";
  std::mt19937 random(seed);
  auto childArgs = [&](const std::string& backend, const std::string& knownIds, bool last) {
    std::vector<std::string> args = {"bench_soak", "--child=" + workDir.string(), "--registry=" + registry->hostPort(),
                                     "--backend=" + backend, "--seed=" + std::to_string(random())};
    if (!knownIds.empty()) args.push_back("--known=" + knownIds);
    if (last) args.push_back("--final");
    return args;
  };

  long kills = 0, operations = 0, errors = 0;
  std::map<std::string, long> errorKinds;
  std::vector<std::string> violations;
  for (long t = 0; t < trials; ++t) {
    const bool early = random() % 5 == 0;
    const auto after = std::chrono::milliseconds(random() % static_cast<unsigned>(maxKillMs + 1));
    Run run = runOne(childArgs(kBackends[t % 3], randomKnown(workDir, random), false), after, early);
    kills += run.killed;
    operations += run.operations;
    errors += run.errors;
    for (const auto& [kind, n] : run.errorKinds) errorKinds[kind] += n;
    for (const auto& v : run.violations) {
      std::printf("trial %ld: %s\n", t, v.c_str());
      violations.push_back(v);
    }
    if ((t + 1) % 50 == 0) {
      std::fprintf(stderr, "%ld trials, %ld kills, %ld operations, %zu violations\n", t + 1, kills, operations,
                   violations.size());
    }
  }
  Run last = runOne(childArgs(backend::kCopy, randomKnown(workDir, random), true), std::chrono::milliseconds(-1),
                    false);
  for (const auto& v : last.violations) {
    std::printf("final: %s\n", v.c_str());
    violations.push_back(v);
  }
  std::fprintf(stderr, "failed operations (expected: bind refuses multi-layer images, races with destroys):\n");
  for (const auto& [kind, n] : errorKinds) std::fprintf(stderr, "%8ld  %s\n", n, kind.c_str());
  // Unmount what a killed child may have left if the checks above failed.
  for (const auto& mount : testing::mountsUnder(workDir)) ::umount2(mount.c_str(), MNT_DETACH);
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
  std::printf(
      "{\"trials\":%ld,\"kills\":%ld,\"operations\":%ld,\"failed_operations\":%ld,\"violations\":%zu,"
      "\"store_bytes_after_drain\":%lld,\"seconds\":%.1f,\"seed\":%u}\n",
      trials, kills, operations, errors, violations.size(), last.storeBytes, seconds, seed);
  return violations.empty() ? 0 : 1;
}
