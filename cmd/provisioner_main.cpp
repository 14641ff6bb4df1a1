// provisioner: the command line over the Provisioner library.
//
//   provisioner [FLAGS] pull IMAGE
//   provisioner [FLAGS] provision CONTAINER_ID IMAGE [--bundle=DIR [--entrypoint=X]
//                                  [--terminal] [-- COMMAND ARGS...]]
//   provisioner [FLAGS] destroy CONTAINER_ID
//   provisioner [FLAGS] containers
//   provisioner [FLAGS] images
//   provisioner [FLAGS] prune [--exclude=IMAGE ...]
//   provisioner [FLAGS] verify [--repair] [IMAGE...]
//   provisioner [FLAGS] metrics
//   provisioner --version               prints "provisioner <version>"
//
// Every run takes the work dir's lock, recovers (every container on disk
// counts as known), then does its one command. Exit status: 0 done, 1 an
// error (one line on stderr starting "error: ", nothing on stdout), 2 bad
// usage, 3 destroy of an unknown container, 4 verify found damage. When stderr is a terminal, pull
// and provision draw a live per-layer progress display there (progress.hpp).

#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "actors/actors.hpp"
#include "actors/log.hpp"
#include "cmd/output.hpp"
#include "cmd/progress.hpp"
#include "provisioner/provisioner.hpp"
#include "provisioner/version.hpp"
#include "store/store.hpp"

namespace {

namespace po = boost::program_options;
using namespace prov;

constexpr const char* kUsage =
    "Usage: provisioner [FLAGS] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  pull IMAGE                       fetch an image into the store\n"
    "  provision CONTAINER_ID IMAGE     make a rootfs for a container; prints its path\n"
    "     [--bundle=DIR [-- COMMAND...]]  and an OCI runtime bundle for runc (`runc run -b DIR ID`):\n"
    "                                   DIR (new, made 0700) gets config.json; prints DIR instead;\n"
    "                                   COMMAND replaces the image's Cmd; destroy removes it\n"
    "  destroy CONTAINER_ID             remove a container's rootfses (exit 3: unknown id)\n"
    "  containers                       list containers and their rootfses\n"
    "  images                           list the images in the store\n"
    "  prune [--exclude=IMAGE ...]      remove images and layers no container uses\n"
    "  gc                               one check of image GC by --image_gc_config, now; prints\n"
    "                                   the images it removed\n"
    "  verify [--repair] [IMAGE...]     check the images' layers (every image's when none is named)\n"
    "                                   against what each held when it was committed: prints each\n"
    "                                   damaged path; exit 4 when damage is left. --repair fetches\n"
    "                                   damaged layers again from the source (one a container\n"
    "                                   uses stays for it until a prune after it goes)\n"
    "  metrics                          this run's counters (after its recover), Prometheus text format\n"
    "\n"
    "IMAGE: docker://REF or REF (a registry), oci:DIR[:TAG], docker-archive:FILE,\n"
    "       appc:NAME[,LABEL=VALUE...]\n"
    "CONTAINER_ID: NAME or PARENT/CHILD (nested); names use [A-Za-z0-9_.-]\n"
    "pull and provision show each layer's progress on stderr when it is a terminal.\n";

int fail(const std::string& message, int code = 1) {
  std::cerr << "error: " << cmd::printable(message) << "\n";
  return code;
}

// Blocks the calling (main) thread until `future` completes; its value, or
// nothing with `error` set. (actors::await never blocks: it is a future.)
template <typename T>
std::optional<T> blockOn(const actors::Future<T>& future, std::string& error) {
  future.waitFor(std::chrono::hours(24));
  if (future.isReady()) return future.get();
  error = future.isFailed() ? future.failure().message : "the operation was cancelled";
  return std::nullopt;
}

// What the command line asked for.
struct Invocation {
  provisioner::Flags flags;
  bool json = false;
  std::string command;
  std::vector<std::string> args;
  std::vector<std::string> excluded;  // prune --exclude
  // provision --bundle
  std::string bundle;
  std::optional<std::string> entrypoint;
  bool terminal = false;
  bool repair = false;  // verify
  int priority = 0;     // pull, provision
  actors::LogLevel logLevel = actors::LogLevel::Error;
};

// The invocation, or the exit code to stop with (0 after --help or
// --version, 2 after a usage error, which has been printed).
std::variant<Invocation, int> parseCommandLine(int argc, char** argv) {
  Invocation in;
  provisioner::Flags& flags = in.flags;
  std::string dockerInsecure, dockerMirrors;
  double lockTimeout = 60;
  std::string logLevel = "error";
  po::options_description options("Flags (--name=value)");
  options.add_options()("help", "print this help")("version", "print the version and exit")(
      "work_dir", po::value(&flags.workDir)->default_value(flags.workDir), "where containers and the image store live")(
      "image_providers", po::value(&flags.imageProviders)->default_value(flags.imageProviders),
      "image types to serve: docker, appc (comma separated)")(
      "image_provisioner_backend", po::value(&flags.imageProvisionerBackend),
      "copy, bind, overlay or aufs (default: overlay, aufs, copy: the first this machine can run)")(
      "overlay_volatile", po::bool_switch(&flags.overlayVolatile),
      "overlay backend: mount rootfses with overlayfs's 'volatile' (Linux 5.10+): a sync asked for in the "
      "container (fsync, fdatasync, syncfs, O_SYNC) returns without syncing, so a program that trusts fsync (a "
      "database, a package manager) may lose acknowledged writes in a host crash, and a destroy no longer waits for "
      "the upper file system's sync (provision+destroy about 2x faster in bench_backend here); volumes are not "
      "affected")(
      "docker_registry", po::value(&flags.dockerRegistry)->default_value(flags.dockerRegistry),
      "registry URL for references without one, or a directory of `docker save` tarballs (<dir>/<name>.tar)")(
      "docker_store_dir", po::value(&flags.dockerStoreDir),
      "the Docker/OCI image store (default: <work_dir>/store/docker)")(
      "docker_config", po::value(&flags.dockerConfig), "Docker config.json with registry credentials: a file or JSON")(
      "docker_insecure_registries", po::value(&dockerInsecure),
      "HOST:PORT,... reached over TLS without verification, or plain http when they do not speak TLS")(
      "docker_registry_ca", po::value(&flags.dockerRegistryCa),
      "a PEM CA bundle trusted for registries, beside the system's")(
      "docker_registry_mirrors", po::value(&dockerMirrors), "URL,... tried in order before docker.io")(
      "signature_policy", po::value(&flags.signaturePolicy),
      "a containers-policy.json(5) file (as /etc/containers/policy.json): which Docker/OCI images may be pulled "
      "and provisioned, by transport and scope: insecureAcceptAnything, reject, signedBy (GPG keys; simple "
      "signing signatures read from the lookaside registries.d gives) or sigstoreSigned (public keys; signatures "
      "attached in the registry where registries.d sets use-sigstore-attachments). Checked before any layer is "
      "fetched, and again when a stored image is provisioned (an acceptance stands for an hour). Not given: "
      "every image is accepted, no signature is looked at")(
      "registries_d", po::value(&flags.registriesDir),
      "with --signature_policy: a containers-registries.d(5) directory of *.yaml giving where signatures are "
      "(lookaside: file:// or http(s):// URLs) (default: /etc/containers/registries.d)")(
      "appc_store_dir", po::value(&flags.appcStoreDir), "the AppC image store (default: <work_dir>/store/appc)")(
      "appc_simple_discovery_uri_prefix",
      po::value(&flags.appcSimpleDiscoveryUriPrefix)->default_value(flags.appcSimpleDiscoveryUriPrefix),
      "where AppC images are found: PREFIX{name}-{version}-{os}-{arch}.aci; an http:// or https:// URL or a "
      "local directory ending in /")(
      "image_gc_config", po::value(&flags.imageGcConfig),
      "image GC (checked every interval by an embedder; by `gc` here): JSON or a file. Mesos's policy, "
      "every unused image below a free fraction: {\"image_disk_headroom\":0.1,\"image_disk_watch_interval\":"
      "{\"nanoseconds\":N},\"excluded_images\":[...]}. The kubelet's, least recently used first, instead of "
      "the headroom: \"image_gc_high_threshold_percent\":85,\"image_gc_low_threshold_percent\":80 (of each "
      "store's file system), \"image_store_max_bytes\":N, \"image_minimum_age\":{\"nanoseconds\":N} (default 2 "
      "min). Images in use or excluded always stay")(
      "max_layer_bytes", po::value(&flags.limits.maxLayerBytes)->default_value(flags.limits.maxLayerBytes),
      "a layer (or ACI) may unpack to at most this many bytes; also caps a download of unknown size")(
      "max_layer_entries", po::value(&flags.limits.maxEntries)->default_value(flags.limits.maxEntries),
      "a layer may hold at most this many files, directories and links")(
      "max_image_bytes", po::value(&flags.limits.maxImageBytes)->default_value(flags.limits.maxImageBytes),
      "an image's new layers together may unpack to at most this many bytes")(
      "max_image_layers", po::value(&flags.limits.maxImageLayers)->default_value(flags.limits.maxImageLayers),
      "an image may have at most this many layers (AppC: images in its dependency tree)")(
      "log_level", po::value(&logLevel)->default_value(logLevel),
      "error, warn, info or debug: one structured line per event on stderr (pulls, retries, tokens, GC, "
      "recovery)")("lock_timeout", po::value(&lockTimeout)->default_value(lockTimeout),
                   "seconds to wait for the work dir while another command uses it (0: do not wait)")(
      "json", po::bool_switch(&in.json), "print JSON")("exclude", po::value(&in.excluded)->composing(),
                                                       "prune: an image to keep (repeatable)")(
      "bundle", po::value(&in.bundle),
      "provision: also write an OCI runtime bundle in this new directory (absolute or relative)")(
      "entrypoint", po::value<std::string>(),
      "provision --bundle: run this instead of the image's Entrypoint (and drop its Cmd; '' clears it)")(
      "terminal", po::bool_switch(&in.terminal), "provision --bundle: process.terminal (runc needs a tty then)")(
      "repair", po::bool_switch(&in.repair),
      "verify: fetch each damaged layer again from the image's source (a source that is gone leaves it as it "
      "is); a layer a container uses stays on disk for it, is never handed out again, and goes with the first "
      "prune after its last container")(
      "priority", po::value(&in.priority)->default_value(0),
      "pull, provision: the pull's rank among the pulls of one process (an agent that embeds the library sets "
      "Image.priority): its layers go before waiting ones of lower priority, and one more urgent than all that run "
      "starts at once; a command runs one pull, so on its own this changes nothing");
  po::options_description hidden;
  hidden.add_options()("command", po::value(&in.command))("args", po::value(&in.args));
  po::options_description all;
  all.add(options).add(hidden);
  po::positional_options_description positional;
  positional.add("command", 1).add("args", -1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "error: " << e.what() << "\n" << kUsage;
    return 2;
  }
  if (vm.count("version")) {
    std::cout << "provisioner " << kVersion << "\n";
    return 0;
  }
  if (vm.count("help") || !vm.count("command")) {
    std::cout << kUsage << "\n" << options << "\n";
    return vm.count("help") ? 0 : 2;
  }
  if (!(lockTimeout >= 0 && lockTimeout <= 24 * 3600)) {
    std::cerr << "error: Invalid --lock_timeout: " << lockTimeout << " is not a number of seconds in 0..86400\n";
    return 2;
  }
  flags.lockTimeout = std::chrono::milliseconds(static_cast<long>(lockTimeout * 1000));
  auto level = actors::parseLogLevel(logLevel);
  if (!level) return fail("Invalid --log_level '" + logLevel + "': error, warn, info or debug", 2);
  in.logLevel = *level;
  flags.dockerInsecureRegistries = cmd::splitList(dockerInsecure);
  flags.dockerRegistryMirrors = cmd::splitList(dockerMirrors);
  const std::map<std::string, std::size_t> arity = {{"pull", 1},       {"provision", 2}, {"destroy", 1},
                                                    {"containers", 0}, {"images", 0},    {"prune", 0},
                                                    {"metrics", 0},    {"gc", 0},        {"verify", 0}};
  auto wanted = arity.find(in.command);
  if (wanted == arity.end()) return fail("unknown command '" + in.command + "'\n" + kUsage, 2);
  if (vm.count("entrypoint")) in.entrypoint = vm["entrypoint"].as<std::string>();
  if (in.command != "provision" && (!in.bundle.empty() || in.entrypoint || in.terminal)) {
    return fail("--bundle, --entrypoint and --terminal are for provision", 2);
  }
  if (in.bundle.empty() && (in.entrypoint || in.terminal)) return fail("--entrypoint and --terminal need --bundle", 2);
  const bool command = in.command == "provision" && !in.bundle.empty() && in.args.size() > wanted->second;
  const bool images = in.command == "verify";  // any number
  if (in.args.size() != wanted->second && !command && !images) {
    return fail("'" + in.command + "' takes " + std::to_string(wanted->second) + " argument(s)\n" + kUsage, 2);
  }
  if (in.command != "prune" && !in.excluded.empty()) return fail("--exclude is for prune", 2);
  if (in.command != "verify" && in.repair) return fail("--repair is for verify", 2);
  if (vm.count("priority") && !vm["priority"].defaulted() && in.command != "pull" && in.command != "provision") {
    return fail("--priority is for pull and provision", 2);
  }
  return in;
}

// pull IMAGE, provision ID IMAGE.
// `existed`: the container was on disk before this command.
int pullOrProvision(provisioner::Provisioner& p, const Invocation& in, cmd::ProgressDisplay* progress, bool existed) {
  std::string error;
  auto image = provisioner::parseImage(in.command == "pull" ? in.args[0] : in.args[1]);
  if (image.isError()) return fail(image.error().message);
  image->set_priority(in.priority);
  if (in.command == "pull") {
    // A pull is a provision that hands out nothing: the store's get.
    auto info = blockOn(p.pullImage(*image), error);
    if (progress) progress->finish();  // its last state, before the result or the error
    if (!info) return fail(error);
    std::cout << (in.json ? cmd::imageJson(*info) : info->key() + " " + cmd::imageDigest(*info)) << "\n";
    return 0;
  }
  auto valid = provisioner::validateContainerId(in.args[0]);
  if (valid.isError()) return fail(valid.error().message);
  auto info = blockOn(p.provision(in.args[0], *image), error);
  if (progress) progress->finish();
  if (!info) return fail(error);
  if (in.bundle.empty()) {
    std::cout << (in.json ? cmd::provisionJson(*info) : info->rootfs) << "\n";
    return 0;
  }
  provisioner::BundleOptions options;
  std::error_code ec;
  options.dir = std::filesystem::absolute(in.bundle, ec).lexically_normal().string();
  if (!options.dir.empty() && options.dir.size() > 1 && options.dir.back() == '/') options.dir.pop_back();
  if (in.entrypoint) {
    options.entrypoint = in.entrypoint->empty() ? std::vector<std::string>{} : std::vector<std::string>{*in.entrypoint};
  }
  if (in.args.size() > 2) options.cmd = std::vector<std::string>(in.args.begin() + 2, in.args.end());
  options.terminal = in.terminal;
  auto bundle = blockOn(p.writeBundle(in.args[0], *info, options), error);
  if (!bundle) {
    // Nothing half done: a container this command made goes again (one
    // that was there before keeps the new rootfs; the message says so).
    if (existed) return fail(error + " (the rootfs " + info->rootfs + " stays with the container)");
    std::string ignored;
    blockOn(p.destroy(in.args[0]), ignored);
    return fail(error);
  }
  std::cout << (in.json ? cmd::provisionJson(*info, *bundle) : *bundle) << "\n";
  return 0;
}

// verify's results printed; exit 4 when one is not whole (repaired), 1 when
// there are none (`error` says why).
template <typename Result, typename Text>
int printVerdict(const std::optional<std::vector<Result>>& results, const std::string& error, bool json, Text text) {
  if (!results) return fail(error);
  std::cout << text(*results, json);
  for (const auto& result : *results) {
    if constexpr (std::is_same_v<Result, provisioner::ImageRepair>) {
      if (!result.repaired()) return 4;
    } else {
      if (!result.ok()) return 4;
    }
  }
  return 0;
}

// Every other command.
int runCommand(provisioner::Provisioner& p, const Invocation& in) {
  std::string error;
  if (in.command == "destroy") {
    auto destroyed = blockOn(p.destroy(in.args[0]), error);
    if (!destroyed) return fail(error);
    if (!*destroyed) return fail("Failed to destroy container '" + in.args[0] + "': no such container", 3);
    return 0;
  }
  if (in.command == "containers") {
    auto containers = blockOn(p.containers(), error);
    if (!containers) return fail(error);
    std::cout << cmd::containersText(*containers, in.json);
    return 0;
  }
  if (in.command == "metrics") {
    auto text = blockOn(p.metricsText(), error);
    if (!text) return fail(error);
    std::cout << *text;
    return 0;
  }
  if (in.command == "gc") {
    auto removed = blockOn(p.collectImages(), error);
    if (!removed) return fail(error);
    for (const auto& key : *removed) std::cout << cmd::printable(key) << "\n";
    return 0;
  }
  if (in.command == "verify") {
    std::vector<messages::Image> images;
    for (const auto& name : in.args) {
      auto image = provisioner::parseImage(name);
      if (image.isError()) return fail(image.error().message);
      images.push_back(*image);
    }
    return in.repair ? printVerdict(blockOn(p.repairImages(images), error), error, in.json, cmd::repairText)
                     : printVerdict(blockOn(p.verifyImages(images), error), error, in.json, cmd::verifyText);
  }
  if (in.command == "images") {
    auto images = blockOn(p.imageUsage(), error);
    if (!images) return fail(error);
    std::cout << cmd::imagesText(*images, in.json);
    return 0;
  }
  std::vector<messages::Image> keep;
  for (const auto& name : in.excluded) {
    auto image = provisioner::parseImage(name);
    if (image.isError()) return fail(image.error().message);
    keep.push_back(*image);
  }
  if (!blockOn(p.pruneImages(keep), error)) return fail(error);
  return 0;
}

// A result that cannot be written (a full disk under stdout) is an error,
// not a silent exit 0 at the flush after the teardown.
int finished(int code) {
  if (code != 0) return code;
  if (!std::cout.flush()) return fail("Failed to write the result to standard output (what the command did is kept)");
  return code;
}

// Once the provisioner's background work has ended (Provisioner::quiesce:
// what the command did is on disk), what is left is its actors and the
// runtime: threads, idle, and memory. The kernel takes them back at exit
// faster than stopping the actors one by one (each a round trip to a
// worker: 0.3-0.7 ms of a tiny pull) and joining the threads. Sanitizer
// builds tear down in full, for their leak and thread checks.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PROV_FULL_TEARDOWN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PROV_FULL_TEARDOWN 1
#endif
#endif

#ifdef PROV_FULL_TEARDOWN
constexpr bool kFullTeardown = true;
#else
constexpr bool kFullTeardown = false;
#endif

int exitWithoutRuntimeTeardown(int code) {
#ifdef PROV_FULL_TEARDOWN
  return code;
#else
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  std::_Exit(code);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parseCommandLine(argc, argv);
  if (const int* exit = std::get_if<int>(&parsed)) return *exit;
  Invocation& in = std::get<Invocation>(parsed);
  const bool pulls = in.command == "pull" || in.command == "provision";
  // Declared before the runtime: it outlives the store reporting to it.
  std::unique_ptr<cmd::ProgressDisplay> progress;
  if (pulls && ::isatty(STDERR_FILENO)) {
    progress = std::make_unique<cmd::ProgressDisplay>(STDERR_FILENO);
    in.flags.progress = progress->callback();
  }
  if (pulls) {
    // The registry's TLS set-up, on another thread while the work dir is
    // opened and recovered (a bad image name is reported later, as usual).
    auto image = provisioner::parseImage(in.command == "pull" ? in.args[0] : in.args[1]);
    if (image.isSome() && image->type() == messages::Image::DOCKER) {
      in.flags.pullsFrom = image->reference().registry();
    }
    // A pull is one store's get: the other provider's store is neither
    // made nor recovered (issue #18).
    if (image.isSome() && in.command == "pull") in.flags.onlyProvider = store::providerOf(*image);
  }
  if (::isatty(STDERR_FILENO)) {
    in.flags.onLockWait = [&in](pid_t holder) {
      std::cerr << "waiting for " << in.flags.workDir << ": another provisioner (pid " << holder
                << ") uses it (--lock_timeout=" << in.flags.lockTimeout.count() / 1000.0 << "s)\n";
    };
  }
  actors::setLogSink(actors::stderrSink(), in.logLevel);
  // A command that moves no image data (images, containers, destroy,
  // prune, metrics) waits on one file system step after another: one
  // worker thread serves it, and a second would only cost its start and the
  // hand-offs between the two. The blocking pool is as usual.
  actors::Runtime::Options threads;
  if (!pulls && in.command != "verify") threads.workerThreads = 1;
  // A pull starts with one too; the others start once its blobs add up to
  // bulk (fetcher/http.cpp).
  if (pulls) threads.startedWorkerThreads = 1;
  actors::Runtime runtime(threads);
  auto created = provisioner::Provisioner::create(in.flags, runtime);
  if (created.isError()) return fail(created.error().message);
  auto& p = **created;
  auto known = provisioner::Provisioner::containersOnDisk(in.flags.workDir);
  if (known.isError()) return fail(known.error().message);
  std::string error;
  if (!blockOn(p.recover(*known), error)) return fail("Failed to recover: " + error);
  const int code = finished(
      pulls ? pullOrProvision(p, in, progress.get(), in.command == "provision" && known->count(in.args[0]) > 0)
            : runCommand(p, in));
  // What the provisioner does in the background ends here (gc/ sweeps,
  // index writes), given as long as a teardown gives it (five minutes: a
  // sweep cut short is finished by the next start); the work dir's lock
  // goes at exit.
  if (!p.quiesce().waitFor(std::chrono::minutes(5))) {
    std::cerr << "warning: work in the background (a gc/ sweep, an index write) was still running after 5 "
                 "minutes; the next start finishes it\n";
  }
  // A signature policy's keyrings are temporary directories that only
  // their destructors remove.
  if (kFullTeardown || !in.flags.signaturePolicy.empty()) created->reset();
  if (progress) progress->finish();
  return exitWithoutRuntimeTeardown(code);
}
