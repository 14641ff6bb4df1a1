#include "bench/pull_tools.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "bench/pull_ours.hpp"
#include "bench/pull_process.hpp"
#include "bench/pull_system.hpp"

namespace prov::bench::pull {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {

double mib(long kib) { return static_cast<double>(kib) / 1024.0; }

std::string reference(const ToolContext& context, const BuiltWorkload& image) {
  return context.registryHostPort + "/" + image.repository() + ":latest";
}

// A fresh log for one run of one tool.
fs::path freshLog(const ToolContext& context, const std::string& name) {
  const fs::path log = context.dir / "logs" / (name + ".log");
  fs::create_directories(log.parent_path());
  fs::remove(log);
  return log;
}

std::string failure(const std::string& what, const ProcessResult& r, const fs::path& log) {
  std::string tail = tailOf(log, 600);
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  return what + " " + r.describe() + (tail.empty() ? "" : ": " + tail) + " (log: " + log.string() + ")";
}

// ---- ours --------------------------------------------------------------------------

class Ours : public Tool {
 public:
  explicit Ours(const ToolContext& context) : context_(context), self_(fs::read_symlink("/proc/self/exe")) {}
  std::string name() const override { return "ours"; }
  std::string key() const override { return "ours"; }

  ToolRun run(const BuiltWorkload& image) override {
    const fs::path store = context_.mount / "ours-store";
    const fs::path report = context_.dir / "ours-rss";
    context_.resetScratch();
    fs::remove(report);
    const fs::path log = freshLog(context_, "ours");
    const std::vector<std::string> argv = {self_.string(),
                                           "--ours",
                                           "--registry=" + context_.registryHostPort,
                                           "--reference=" + reference(context_, image),
                                           "--store=" + store.string(),
                                           "--rss-report=" + report.string()};
    ::sync();
    const ProcessResult r = runLogged(argv, log, context_.timeout);
    ToolRun run;
    run.seconds = r.seconds;
    run.ok = r.ok();
    if (!run.ok) run.error = failure("bench_pull --ours", r, log);
    if (run.ok && !fs::exists(store)) {
      run.ok = false;
      run.error = "bench_pull --ours exited 0 but wrote nothing to " + store.string();
    }
    long kib = 0;
    if (std::ifstream(report) >> kib) run.peakRssMib.emplace_back("ours", mib(kib));
    fs::remove(report);
    return run;
  }

 private:
  ToolContext context_;
  fs::path self_;
};

// ---- skopeo + umoci ----------------------------------------------------------------

class SkopeoUmoci : public Tool {
 public:
  explicit SkopeoUmoci(const ToolContext& context) : context_(context) {}
  std::string name() const override { return "skopeo+umoci"; }
  std::string key() const override { return "skopeo_umoci"; }

  ToolRun run(const BuiltWorkload& image) override {
    const fs::path layout = context_.mount / "oci-layout";
    const fs::path bundle = context_.mount / "umoci-bundle";
    context_.resetScratch();
    const fs::path log = freshLog(context_, "skopeo-umoci");
    ToolRun run;
    ::sync();
    const auto start = SteadyClock::now();
    const ProcessResult copy = runLogged({"skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                                          "docker://" + reference(context_, image),
                                          "oci:" + layout.string() + ":latest"},
                                         log, context_.timeout);
    if (copy.ok()) {
      const ProcessResult unpack = runLogged(
          {"umoci", "unpack", "--image", layout.string() + ":latest", bundle.string()}, log, context_.timeout);
      run.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
      run.ok = unpack.ok();
      if (!run.ok) run.error = failure("umoci unpack", unpack, log);
      run.peakRssMib = {{"skopeo", mib(copy.maxRssKib)}, {"umoci", mib(unpack.maxRssKib)}};
    } else {
      run.error = failure("skopeo copy", copy, log);
    }
    if (run.ok && !fs::is_directory(bundle / "rootfs")) {
      run.ok = false;
      run.error = "umoci unpack made no " + (bundle / "rootfs").string();
    }
    return run;
  }

 private:
  ToolContext context_;
};

// ---- the floor: tar -x + sync ---------------------------------------------------------

// What the kernel needs to write the image durably, whoever writes it: GNU
// tar extracting each layer's tar (inflated beforehand, untimed, and in the
// page cache) onto the scratch file system, then `sync -f` of it. No
// download, inflating, hashing or whiteouts: a floor to compare with, not a
// peer (it is not counted as the best peer).
class TarFloor : public Tool {
 public:
  explicit TarFloor(const ToolContext& context) : context_(context) {}
  std::string name() const override { return "tar -x + sync"; }
  std::string key() const override { return "tar_sync"; }

  ToolRun run(const BuiltWorkload& image) override {
    const fs::path log = freshLog(context_, "tar-sync");
    ToolRun run;
    std::vector<fs::path> tars;
    for (const auto& layer : image.layers) {
      const fs::path tar = context_.dir / "floor-tars" / (layer.diffId.substr(7) + ".tar");
      if (!fs::exists(tar)) {
        fs::create_directories(tar.parent_path());
        const fs::path blob = image.layout / "blobs" / "sha256" / layer.digest.substr(7);
        const std::string partial = tar.string() + ".partial";
        const ProcessResult inflated = runLogged(
            {"sh", "-c", "gzip -dc < \"$1\" > \"$2\"", "sh", blob.string(), partial}, log, context_.timeout);
        if (!inflated.ok()) {
          run.error = failure("gzip -dc", inflated, log);
          return run;
        }
        fs::rename(partial, tar);
      }
      runLogged({"cat", tar.string()}, "/dev/null", context_.timeout);  // into the page cache
      tars.push_back(tar);
    }
    const fs::path rootfs = context_.mount / "tar-rootfs";
    context_.resetScratch();
    fs::create_directories(rootfs);
    ::sync();
    const auto start = SteadyClock::now();
    for (const auto& tar : tars) {
      const ProcessResult extracted = runLogged({"tar", "-xf", tar.string(), "-C", rootfs.string()}, log,
                                                context_.timeout);
      if (!extracted.ok()) {
        run.error = failure("tar -xf", extracted, log);
        return run;
      }
    }
    const ProcessResult synced = runLogged({"sync", "-f", rootfs.string()}, log, context_.timeout);
    run.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
    run.ok = synced.ok();
    if (!run.ok) run.error = failure("sync -f", synced, log);
    return run;
  }

 private:
  ToolContext context_;
};

// ---- containerd --------------------------------------------------------------------

// A throwaway containerd: its own root (on the scratch fs), state, socket and
// config; CRI disabled; started for one pull and stopped after it.
class ContainerdDaemon {
 public:
  ContainerdDaemon(const fs::path& root, const fs::path& state, const fs::path& log)
      : root_(root), state_(state), socket_(state / "containerd.sock") {
    removeTree(root_);
    removeTree(state_);
    fs::create_directories(root_);
    fs::create_directories(state_);
    const fs::path config = state_ / "config.toml";
    std::ofstream(config) << "version = 2\n"
                          << "root = \"" << root_.string() << "\"\n"
                          << "state = \"" << state_.string() << "\"\n"
                          << "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
                          << "[grpc]\n  address = \"" << socket_.string() << "\"\n"
                          << "[ttrpc]\n  address = \"" << socket_.string() << ".ttrpc\"\n"
                          << "[debug]\n  address = \"\"\n  level = \"warn\"\n"
                          << "[metrics]\n  address = \"\"\n"
                          << "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"" << (root_ / "opt").string()
                          << "\"\n";
    pid_ = spawnLogged({"containerd", "--config", config.string()}, log);
    try {
      waitReady(log);
    } catch (...) {
      stop();
      throw;
    }
  }

  // Stops the daemon, unmounts what it left mounted, removes its state.
  ~ContainerdDaemon() {
    try {
      stop();
      unmountBelow(root_);
      removeTree(state_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_pull: Failed to clean up after containerd: %s\n", e.what());
    }
  }

  const fs::path& socket() const { return socket_; }

  // Until `ctr version` answers on the socket (30 s at most).
  void waitReady(const fs::path& log) {
    for (int i = 0; i < 600; ++i) {
      std::string output;
      if (fs::exists(socket_) && tryRun({"ctr", "--address", socket_.string(), "version"}, output) == 0) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("Failed to start containerd: it exited: " + tailOf(log));
      }
      checkInterrupted();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("Failed to start containerd: no answer on " + socket_.string() +
                             " in 30 s: " + tailOf(log));
  }

  // SIGTERM, then SIGKILL after 30 s. The daemon's own peak RSS (KiB).
  long stop() {
    if (pid_ <= 0) return 0;
    ::kill(pid_, SIGTERM);
    const pid_t pid = pid_;
    pid_ = -1;
    return waitTimed(pid, SteadyClock::now(), std::chrono::seconds(30)).maxRssKib;
  }

 private:
  fs::path root_, state_, socket_;
  pid_t pid_ = -1;
};

class Containerd : public Tool {
 public:
  explicit Containerd(const ToolContext& context) : context_(context) {}
  std::string name() const override { return "containerd"; }
  std::string key() const override { return "containerd"; }

  ToolRun run(const BuiltWorkload& image) override {
    const fs::path root = context_.mount / "containerd-root";
    const fs::path state = context_.dir / "containerd-state";
    const fs::path log = freshLog(context_, "containerd");
    context_.resetScratch();
    ToolRun run;
    {
      ContainerdDaemon daemon(root, state, freshLog(context_, "containerd-daemon"));
      const std::string address = daemon.socket().string();
      ::sync();
      const ProcessResult pull = runLogged(
          {"ctr", "--address", address, "images", "pull", "--plain-http", reference(context_, image)}, log,
          context_.timeout);
      run.seconds = pull.seconds;
      run.ok = pull.ok();
      if (!run.ok) run.error = failure("ctr images pull", pull, log);
      if (run.ok) run.error = checkUnpacked(address, image);
      run.ok = run.error.empty();
      const long daemonKib = daemon.stop();
      run.peakRssMib = {{"ctr", mib(pull.maxRssKib)}, {"containerd", mib(daemonKib)}};
    }
    return run;
  }

 private:
  // Empty when the overlayfs snapshotter holds one committed snapshot per layer.
  std::string checkUnpacked(const std::string& address, const BuiltWorkload& image) {
    std::string output;
    if (tryRun({"ctr", "--address", address, "snapshots", "--snapshotter", "overlayfs", "ls"}, output) != 0) {
      return "Failed to list containerd's snapshots: " + output;
    }
    std::size_t committed = 0;
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) committed += line.find("Committed") != std::string::npos;
    if (committed != image.layers.size()) {
      return "containerd did not unpack: " + std::to_string(committed) + " committed snapshots for " +
             std::to_string(image.layers.size()) + " layers";
    }
    return "";
  }

  ToolContext context_;
};

}  // namespace

std::unique_ptr<Tool> makeOurs(const ToolContext& context) { return std::make_unique<Ours>(context); }
std::unique_ptr<Tool> makeTarFloor(const ToolContext& context) { return std::make_unique<TarFloor>(context); }
std::unique_ptr<Tool> makeSkopeoUmoci(const ToolContext& context) { return std::make_unique<SkopeoUmoci>(context); }
std::unique_ptr<Tool> makeContainerd(const ToolContext& context) { return std::make_unique<Containerd>(context); }

int runOursChild(const std::string& registry, const std::string& reference, const std::string& store,
                 const std::string& rssReport) {
  const int code = runOursOnce({registry, reference, store});
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0 && !rssReport.empty()) {
      std::ofstream(rssReport) << std::stol(line.substr(6)) << "\n";
    }
  }
  return code;
}

}  // namespace prov::bench::pull
