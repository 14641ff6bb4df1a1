// An example agent: the Provisioner embedded the way the project means it.
//
//   agent --work_dir=DIR --tasks=FILE [--runc=PATH] [--metrics]
//   agent --version
//
// FILE is a JSON array of tasks, [{"id": "web1", "image": "oci:/layouts/app:v1",
// "command": ["echo", "hi"]}, ...] ("command" may be left out: the image's
// own). For each task the agent's own actor, the Containerizer, provisions a
// rootfs, writes an OCI bundle, runs it with runc, waits, destroys it and
// reports one JSON line on stdout: {"id", "status" (runc's exit status),
// "output"}. The tasks run at once.
//
// What it knows lives in DIR/agent/state.json, written before each step
// that makes something: a task is known from before its provision on. On a
// restart (after kill -9, say) it recovers the Provisioner with the known
// containers (the others are destroyed), waits for the containers that were
// running when it died (runc keeps them), and provisions again the tasks
// it had not started. A task already reported is reported again from the
// state, not run again.
//
// Threads: main() only starts things and blocks on the result; every
// decision runs on the Containerizer's strand (defer), and runc is waited
// for on the runtime's blocking pool (async): no runtime thread ever blocks.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "actors/actors.hpp"
#include "actors/log.hpp"
#include "provisioner/provisioner.hpp"
#include "provisioner/version.hpp"

namespace {

using namespace prov;
namespace fs = std::filesystem;
using actors::Future;
using actors::Nothing;

struct Task {
  std::string id, image;
  std::vector<std::string> command;  // empty: the image's
  std::string phase = "new";         // new, provisioning, running, done
  int status = -1;                   // runc's exit status, once done
  std::string output;
};

std::string readText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<Task> parseTasks(const std::string& json) {
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  std::vector<Task> tasks;
  if (doc.HasParseError() || !doc.IsArray()) return tasks;
  for (const auto& t : doc.GetArray()) {
    Task task;
    task.id = t["id"].GetString();
    task.image = t["image"].GetString();
    if (t.HasMember("command")) {
      for (const auto& a : t["command"].GetArray()) task.command.emplace_back(a.GetString());
    }
    if (t.HasMember("phase")) task.phase = t["phase"].GetString();
    if (t.HasMember("status")) task.status = t["status"].GetInt();
    if (t.HasMember("output")) task.output = t["output"].GetString();
    tasks.push_back(std::move(task));
  }
  return tasks;
}

std::string taskJson(const Task& task, bool report) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("id");
  w.String(task.id.c_str());
  if (!report) {
    w.Key("image");
    w.String(task.image.c_str());
    w.Key("command");
    w.StartArray();
    for (const auto& a : task.command) w.String(a.c_str());
    w.EndArray();
    w.Key("phase");
    w.String(task.phase.c_str());
  }
  w.Key("status");
  w.Int(task.status);
  w.Key("output");
  w.String(task.output.c_str());
  w.EndObject();
  return buffer.GetString();
}

// runc run in the foreground, its output into `log`; its exit status.
// Blocking: it runs on the blocking pool.
int runRunc(const std::string& runc, const std::string& root, const std::string& bundle, const std::string& id,
            const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<std::string> args = {runc, "--root", root, "run", "--bundle", bundle, id};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // SIGPIPE's default disposition back for runc: the process may ignore it
  // (GPGME does, once signatures are checked; fetcher/gpg.hpp).
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int spawned = ::posix_spawnp(&pid, runc.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return 127;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// `runc state ID` says it is still running (blocking).
bool stillRunning(const std::string& runc, const std::string& root, const std::string& id) {
  const std::string command = runc + " --root '" + root + "' state '" + id + "' 2>/dev/null";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return false;
  std::string out;
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe)) out += buffer;
  ::pclose(pipe);
  return out.find("\"status\": \"running\"") != std::string::npos ||
         out.find("\"status\": \"created\"") != std::string::npos;
}

class Containerizer : public actors::Process<Containerizer> {
 public:
  Containerizer(actors::Runtime& runtime, provisioner::Provisioner& provisioner, fs::path dir, std::string runc)
      : actors::Process<Containerizer>("containerizer"), runtime_(runtime), provisioner_(provisioner),
        dir_(std::move(dir)), runc_(std::move(runc)) {}

  // What the last run knew, then the Provisioner recovered with it.
  Future<Nothing> recover() {
    for (auto& task : parseTasks(readText(dir_ / "state.json"))) tasks_[task.id] = task;
    std::set<std::string> known;
    for (const auto& [id, task] : tasks_) {
      if (task.phase != "done") known.insert(id);
    }
    return provisioner_.recover(known);
  }

  // One task to its report.
  Future<std::string> run(const Task& asked) {
    auto it = tasks_.find(asked.id);
    if (it == tasks_.end()) it = tasks_.emplace(asked.id, asked).first;
    Task& task = it->second;
    if (task.phase == "done") return taskJson(task, true);
    if (task.phase == "running") return waitForRunc(task.id);  // it survived our restart
    // "provisioning" (or new): whatever a killed run made goes first.
    task.phase = "provisioning";
    return save()
        .then([this, id = task.id] { return provisioner_.destroy(id); })
        .then(actors::defer(self(), [this, id = task.id](bool) { return provisioner_.provision(id, image(id)); }))
        .then(actors::defer(self(), &Self::bundle, task.id))
        .then(actors::defer(self(), &Self::start, task.id))
        .repair(actors::defer(self(), [this, id = task.id](const Future<std::string>& failed) {
          return finish(id, 125, failed.isFailed() ? failed.failure().message : "discarded");
        }));
  }

 private:
  messages::Image image(const std::string& id) {
    auto parsed = provisioner::parseImage(tasks_[id].image);
    return parsed.isSome() ? *parsed : messages::Image{};
  }

  Future<std::string> bundle(const std::string& id, const provisioner::ProvisionInfo& info) {
    provisioner::BundleOptions options;
    options.dir = (dir_ / "bundles" / id).string();
    if (!tasks_[id].command.empty()) options.cmd = tasks_[id].command;
    fs::create_directories(dir_ / "bundles");
    return provisioner_.writeBundle(id, info, options);
  }

  // The state says "running" before runc starts: a restart waits for it.
  Future<std::string> start(const std::string& id, const std::string& bundle) {
    tasks_[id].phase = "running";
    return save().then(actors::defer(self(), [this, id, bundle] {
      return actors::async(runtime_,
                           [runc = runc_, root = (dir_ / "runc").string(), bundle, id,
                            log = (dir_ / (id + ".log")).string()] { return runRunc(runc, root, bundle, id, log); })
          .then(actors::defer(self(), [this, id](int status) { return finish(id, status, ""); }));
    }));
  }

  // A container that outlived the agent: polled until runc says it stopped.
  Future<std::string> waitForRunc(const std::string& id) {
    return actors::async(runtime_,
                         [runc = runc_, root = (dir_ / "runc").string(), id] { return stillRunning(runc, root, id); })
        .then(actors::defer(self(), [this, id](bool running) -> Future<std::string> {
          if (running) {
            return runtime_.clock().sleep(std::chrono::milliseconds(200)).then(actors::defer(self(), [this, id] {
              return waitForRunc(id);
            }));
          }
          return finish(id, -2, "(it ran while the agent was away)");
        }));
  }

  // runc's state gone, the container destroyed (bundle included), reported.
  Future<std::string> finish(const std::string& id, int status, const std::string& note) {
    Task& task = tasks_[id];
    task.status = status;
    task.output = note.empty() ? readText(dir_ / (id + ".log")) : note;
    return actors::async(runtime_,
                         [runc = runc_, root = (dir_ / "runc").string(), id] {
                           const std::string command = runc + " --root '" + root + "' delete -f '" + id +
                                                       "' >/dev/null 2>&1";
                           return std::system(command.c_str());
                         })
        .then(actors::defer(self(), [this, id](int) { return provisioner_.destroy(id); }))
        .then(actors::defer(self(), [this, id](bool) {
          tasks_[id].phase = "done";
          return save().then([report = taskJson(tasks_[id], true)] { return report; });
        }));
  }

  // state.json, replaced whole (rename), one write at a time and in order:
  // each waits for the one before.
  Future<Nothing> save() {
    std::string json = "[";
    for (const auto& [id, task] : tasks_) json += (json.size() > 1 ? "," : "") + taskJson(task, false);
    json += "]";
    auto write = [json, dir = dir_]() -> actors::Try<Nothing> {
      const fs::path temp = dir / "state.json.tmp";
      std::ofstream(temp) << json;
      std::error_code ec;
      fs::rename(temp, dir / "state.json", ec);
      if (ec) return actors::Error(actors::ErrorKind::IO, "Failed to save the agent's state: " + ec.message());
      return Nothing{};
    };
    saved_ = saved_.recover([](const Future<Nothing>&) { return Nothing{}; }).then(actors::defer(self(), [this, write] {
      return actors::async(runtime_, write);
    }));
    return saved_;
  }

  actors::Runtime& runtime_;
  provisioner::Provisioner& provisioner_;
  const fs::path dir_;
  const std::string runc_;
  std::map<std::string, Task> tasks_;
  Future<Nothing> saved_ = Nothing{};  // the last state write
};

}  // namespace

int main(int argc, char** argv) {
  std::string workDir, tasksFile, runc = "runc";
  bool metrics = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--version") {
      std::cout << "provisioner " << prov::kVersion << "\n";
      return 0;
    }
    if (arg.rfind("--work_dir=", 0) == 0) workDir = arg.substr(11);
    if (arg.rfind("--tasks=", 0) == 0) tasksFile = arg.substr(8);
    if (arg.rfind("--runc=", 0) == 0) runc = arg.substr(7);
    if (arg == "--metrics") metrics = true;
  }
  if (workDir.empty() || tasksFile.empty()) {
    std::cerr << "usage: agent --work_dir=DIR --tasks=FILE [--runc=PATH] [--metrics]\n";
    return 2;
  }
  std::cerr << "agent on provisioner " << prov::kVersion << "\n";
  actors::setLogSink(actors::stderrSink(), actors::LogLevel::Info);
  actors::Runtime runtime;
  provisioner::Flags flags;
  flags.workDir = workDir;
  flags.imageProviders = "docker";
  auto created = provisioner::Provisioner::create(flags, runtime);
  if (created.isError()) {
    std::cerr << "error: " << created.error().message << "\n";
    return 1;
  }
  auto& provisioner = **created;
  const fs::path dir = fs::path(workDir) / "agent";
  fs::create_directories(dir);
  actors::ProcessOwner<Containerizer> containerizer(runtime,
                                                    std::make_unique<Containerizer>(runtime, provisioner, dir, runc));

  auto recovered = containerizer.dispatch(&Containerizer::recover);
  if (!recovered.waitFor(std::chrono::minutes(5)) || !recovered.isReady()) {
    std::cerr << "error: recover: " << (recovered.isFailed() ? recovered.failure().message : "timed out") << "\n";
    return 1;
  }
  std::vector<Future<std::string>> reports;
  for (const auto& task : parseTasks(readText(tasksFile))) {
    reports.push_back(containerizer.dispatch(&Containerizer::run, task));
  }
  auto all = actors::collect(reports);
  all.waitFor(std::chrono::hours(1));
  if (!all.isReady()) {
    std::cerr << "error: " << (all.isFailed() ? all.failure().message : "timed out") << "\n";
    return 1;
  }
  for (const auto& report : all.get()) std::cout << report << "\n";
  if (metrics) {
    auto text = provisioner.metricsText();
    if (text.waitFor(std::chrono::seconds(30)) && text.isReady()) std::cout << text.get();
  }
  return 0;
}
