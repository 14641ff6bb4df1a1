// The provisioner command as a subprocess against the real registry
// (Debian's docker-registry, images pushed by skopeo): pull, provision with
// overlay and with copy, a command run in the rootfs via chroot, containers,
// images, destroy (exit 3 for an unknown id), prune, errors; and kill -9 in
// the middle of a pull, then a consistent store on the next run; the
// progress display on a pseudo-terminal, and none on a pipe.

#include <fcntl.h>
#include <pty.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/file.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "provisioner/version.hpp"
#include "testkit/files.hpp"
#include "testkit/image_builder.hpp"
#include "testkit/real_registry.hpp"
#include "tests/cmd/cli_fixture.hpp"
#include "tests/support/registry_fixture.hpp"
#include "tests/support/temp_dir.hpp"

#ifndef PROV_CLI
#error "PROV_CLI must name the provisioner executable"
#endif

namespace prov {
namespace {

namespace fs = std::filesystem;
using clitest::CliTest;
using testing::CommandResult;
using testing::OciLayout;
using testing::RealRegistry;
using testing::TarEntry;

// The progress display's size format, written out again: 512 B, 1.5 KiB, 16.0 MiB.
std::string humanBytes(std::int64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  char text[32];
  const double kib = static_cast<double>(bytes) / 1024;
  if (kib < 1023.95) {
    std::snprintf(text, sizeof text, "%.1f KiB", kib);
  } else {
    std::snprintf(text, sizeof text, "%.1f MiB", kib / 1024);
  }
  return text;
}

std::string regexEscape(const std::string& text) {
  return std::regex_replace(text, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)");
}

// The terminal's lines after the display's last cursor-up (all of them
// when it drew once), without the clear-line codes and the terminal's \r.
std::vector<std::string> lastFrame(const std::string& terminal) {
  std::size_t start = 0;
  const std::regex up("\x1b\\[[0-9]+A");
  for (auto it = std::sregex_iterator(terminal.begin(), terminal.end(), up); it != std::sregex_iterator(); ++it) {
    start = static_cast<std::size_t>(it->position() + it->length());
  }
  std::vector<std::string> lines;
  std::string rest = terminal.substr(start);
  for (std::size_t end; (end = rest.find('\n')) != std::string::npos; rest.erase(0, end + 1)) {
    std::string line = rest.substr(0, end);
    std::erase(line, '\r');
    if (line.rfind("\x1b[2K", 0) == 0) line.erase(0, 4);
    lines.push_back(line);
  }
  if (!rest.empty()) lines.push_back(rest);  // no final newline: the test fails on it
  return lines;
}

std::string shortDigest(const std::string& digest) { return digest.substr(digest.find(':') + 1, 12); }

TEST_F(CliTest, PullProvisionRunDestroyPrune) {
  const std::string image = pushBusybox("busybox");
  auto pulled = run({"pull", image});
  ASSERT_EQ(0, pulled.status) << pulled.err;
  EXPECT_EQ(0u, pulled.out.find("docker://" + image + ":latest sha256:")) << pulled.out;
  // The registry on 127.0.0.1 was asked over plain http, answered, and the
  // store remembers it (a store from before had no such file).
  EXPECT_EQ(registry_->hostPort() + "\n", testing::readFile(workDir_ / "store/docker/plain-registries"));
  // A pull is one store's get: the AppC store was neither made nor
  // recovered (the next command that serves every provider makes it).
  EXPECT_FALSE(fs::exists(workDir_ / "store/appc"));

  auto overlay = run({"--image_provisioner_backend=overlay", "--json", "provision", "c1", image});
  ASSERT_EQ(0, overlay.status) << overlay.err;
  EXPECT_EQ("", overlay.err);
  rapidjson::Document doc;
  doc.Parse(overlay.out.c_str());
  ASSERT_FALSE(doc.HasParseError()) << overlay.out;
  const std::string rootfs = doc["rootfs"].GetString();
  EXPECT_EQ(std::string("overlay"), doc["backend"].GetString());
  EXPECT_EQ(0u, std::string(doc["image"]["manifest_digest"].GetString()).find("sha256:"));
  EXPECT_EQ(std::string("/bin/sh"), doc["config"]["cmd"][0].GetString());
  EXPECT_EQ(std::string("/tmp"), doc["config"]["working_dir"].GetString());
  EXPECT_EQ(std::string("PATH=/bin"), doc["config"]["env"][0].GetString());
  auto ran = testing::runCommand({"chroot", rootfs, "/bin/sh", "-c", "echo hello from c1"});
  EXPECT_EQ(0, ran.status) << ran.output;
  EXPECT_EQ("hello from c1\n", ran.output);

  auto copy = run({"--image_provisioner_backend=copy", "provision", "c2", image});
  ASSERT_EQ(0, copy.status) << copy.err;
  const std::string copied = copy.out.substr(0, copy.out.size() - 1);
  EXPECT_NE(std::string::npos, copied.find("/backends/copy/rootfses/")) << copied;
  ran = testing::runCommand({"chroot", copied, "/bin/echo", "copied"});
  EXPECT_EQ("copied\n", ran.output);

  auto containers = run({"--json", "containers"});
  ASSERT_EQ(0, containers.status) << containers.err;
  doc.Parse(containers.out.c_str());
  ASSERT_TRUE(doc.IsArray()) << containers.out;
  EXPECT_EQ(2u, doc.Size());
  auto images = run({"--json", "images"});
  doc.Parse(images.out.c_str());
  ASSERT_TRUE(doc.IsArray()) << images.out;
  ASSERT_EQ(1u, doc.Size());
  EXPECT_TRUE(fs::is_directory(workDir_ / "store/appc/images"));
  const auto& listed1 = doc[0];
  EXPECT_GT(listed1["size_bytes"].GetInt64(), 0) << images.out;
  EXPECT_EQ(listed1["size_bytes"].GetInt64(), listed1["own_bytes"].GetInt64()) << "no other image shares its layer";
  EXPECT_TRUE(listed1["in_use"].GetBool()) << images.out;
  EXPECT_GE(listed1["last_used_at"].GetInt64(), listed1["pulled_at"].GetInt64()) << images.out;
  EXPECT_NE(std::string::npos, run({"images"}).out.find("iB  1 layer\n")) << "its size, for people";

  EXPECT_EQ(0, run({"destroy", "c1"}).status);
  EXPECT_FALSE(fs::exists(rootfs));
  auto again = run({"destroy", "c1"});
  EXPECT_EQ(3, again.status);
  EXPECT_EQ("", again.out);
  EXPECT_EQ(0u, again.err.find("error: ")) << again.err;
  EXPECT_EQ(0, run({"prune"}).status);
  const std::string listed = run({"images"}).out;
  EXPECT_NE(std::string::npos, listed.find("  1 layer\n")) << "c2 still uses the image: it stays; " << listed;
  EXPECT_EQ(0, run({"destroy", "c2"}).status);
  EXPECT_EQ(0, run({"prune", "--exclude=" + image}).status);
  EXPECT_NE("", run({"images"}).out) << "an excluded image stays";
  auto noConfig = run({"gc"});
  EXPECT_EQ(1, noConfig.status);
  EXPECT_NE(std::string::npos, noConfig.err.find("--image_gc_config")) << noConfig.err;
  const std::string capped =
      R"(--image_gc_config={"image_store_max_bytes": 1, "image_minimum_age": {"nanoseconds": 0}})";
  auto collected = run({capped, "gc"});
  EXPECT_EQ(0, collected.status) << collected.err;
  EXPECT_EQ("docker://" + image + ":latest\n", collected.out) << "past the cap, unused: removed";
  EXPECT_EQ("", run({"images"}).out);
  EXPECT_EQ("", run({capped, "gc"}).out) << "nothing left to remove";
  EXPECT_EQ(0, run({"prune"}).status);
  EXPECT_EQ("", run({"images"}).out);
  EXPECT_TRUE(fs::is_empty(workDir_ / "store/docker/layers"));
}

// With image GC configured, a pull opens every enabled store: GC weighs
// every store's images together (without it, a pull opens only its own).
TEST_F(CliTest, APullWithImageGcOpensEveryStore) {
  const std::string image = pushBusybox("collected");
  auto pulled = run({R"(--image_gc_config={"image_store_max_bytes": 1099511627776})", "pull", image});
  ASSERT_EQ(0, pulled.status) << pulled.err;
  EXPECT_TRUE(fs::is_directory(workDir_ / "store/appc/images"));
}

// verify names each damaged path of a stored layer, exits 4, and leaves
// the other layer (and image) whole; a layer from before records is
// recorded at its first check; an image not in the store is an error.
TEST_F(CliTest, VerifyNamesEachDamagedPathAndExitsFour) {
  const std::string image = pushBusybox(
      "verified", {TarEntry::directory("etc"), TarEntry::file("etc/data", std::string(4096, 'd')),
                   TarEntry::file("etc/conf", "key=value\n"), TarEntry::file("etc/gone", "soon gone")});
  ASSERT_EQ(0, run({"pull", image}).status);
  auto clean = run({"verify"});
  EXPECT_EQ(0, clean.status) << clean.err;
  EXPECT_EQ("docker://" + image + ":latest  ok  2 layers, 11 entries, ",
            clean.out.substr(0, clean.out.find("entries, ") + 9))
      << clean.out;

  // The layer that has etc/, in the store.
  fs::path layer;
  for (const auto& entry : fs::directory_iterator(workDir_ / "store/docker/layers")) {
    if (fs::exists(entry.path() / "rootfs/etc/data")) layer = entry.path() / "rootfs";
  }
  ASSERT_FALSE(layer.empty());
  fs::resize_file(layer / "etc/data", 100);
  fs::permissions(layer / "etc/conf", fs::perms(0600));
  fs::remove(layer / "etc/gone");
  std::ofstream(layer / "etc/added") << "planted";
  auto damaged = run({"verify", image});
  EXPECT_EQ(4, damaged.status) << damaged.err;
  EXPECT_EQ("", damaged.err);
  const std::string expected = "docker://" + image + ":latest  damaged  2 layers";
  EXPECT_EQ(0u, damaged.out.find(expected)) << damaged.out;
  EXPECT_NE(std::string::npos, damaged.out.find("\n  " + layer.string() +
                                                "\n"
                                                "    /etc/added: added (a file the record does not have)\n"
                                                "    /etc/conf: mode 0600, recorded 0644\n"
                                                "    /etc/data: size 100, recorded 4096\n"
                                                "    /etc/gone: missing (a file)\n"))
      << damaged.out;
  auto json = run({"--json", "verify"});
  EXPECT_EQ(4, json.status);
  rapidjson::Document doc;
  doc.Parse(json.out.c_str());
  ASSERT_TRUE(doc.IsArray() && doc.Size() == 1) << json.out;
  EXPECT_FALSE(doc[0]["ok"].GetBool());
  ASSERT_EQ(2u, doc[0]["layers"].Size());
  EXPECT_TRUE(doc[0]["layers"][0]["ok"].GetBool()) << "busybox's layer is whole";
  EXPECT_EQ(4u, doc[0]["layers"][1]["damage"].Size());
  EXPECT_EQ(std::string("/etc/added"), doc[0]["layers"][1]["damage"][0]["path"].GetString());

  // Repaired, each kind of damage is undone: the layer is the image's again.
  auto repaired = run({"verify", "--repair", image});
  EXPECT_EQ(0, repaired.status) << repaired.out << repaired.err;
  EXPECT_FALSE(fs::exists(layer / "etc/added"));
  EXPECT_EQ(fs::perms(0644), fs::status(layer / "etc/conf").permissions() & fs::perms::mask);
  EXPECT_EQ(std::string(4096, 'd'), testing::readFile(layer / "etc/data"));
  EXPECT_EQ("soon gone", testing::readFile(layer / "etc/gone"));
  EXPECT_EQ("key=value\n", testing::readFile(layer / "etc/conf"));

  // A store from before records: the layer is recorded as it is, then checked.
  fs::path base;
  for (const auto& entry : fs::directory_iterator(workDir_ / "store/docker/layers")) {
    if (fs::exists(entry.path() / "rootfs/bin/busybox")) base = entry.path();
  }
  ASSERT_FALSE(base.empty());
  fs::remove(base / "record");
  auto lost = run({"verify", image});
  EXPECT_EQ(4, lost.status) << "committed with a record, which is gone: " << lost.out;
  EXPECT_NE(std::string::npos, lost.out.find("/record' is missing (it was committed with one)")) << lost.out;
  // As if records began after this layer was committed.
  fs::last_write_time(workDir_ / "store/docker/records-since",
                      fs::file_time_type::clock::now() + std::chrono::hours(1));
  auto adopted = run({"--json", "verify", image});
  doc.Parse(adopted.out.c_str());
  ASSERT_TRUE(doc.IsArray() && doc.Size() == 1) << adopted.out;
  EXPECT_TRUE(doc[0]["layers"][0]["adopted"].GetBool()) << adopted.out;
  EXPECT_TRUE(fs::exists(base / "record"));
  fs::resize_file(base / "rootfs/bin/busybox", 0);
  EXPECT_NE(std::string::npos, run({"verify"}).out.find("    /bin/busybox: size 0, recorded "));

  auto unknown = run({"verify", registry_->hostPort() + "/test/never-pulled"});
  EXPECT_EQ(1, unknown.status);
  EXPECT_EQ("", unknown.out);
  EXPECT_NE(std::string::npos, unknown.err.find("is not in the store")) << unknown.err;
}

// verify --repair: a damaged layer a container uses stays as it is; once
// the container is gone it is fetched again (only it: the other layer is
// the same directory as before) and the image checks whole; a local source
// repairs the same way; a source that is gone leaves the store unchanged.
TEST_F(CliTest, RepairFetchesDamagedLayersAgainUnlessInUseOrTheSourceIsGone) {
  const std::string image = pushBusybox(
      "repaired", {TarEntry::directory("etc"), TarEntry::file("etc/data", std::string(4096, 'd'))});
  ASSERT_EQ(0, run({"pull", image}).status);
  auto layerWith = [&](const std::string& rel) {
    for (const auto& entry : fs::directory_iterator(workDir_ / "store/docker/layers")) {
      if (fs::exists(entry.path() / "rootfs" / rel)) return entry.path() / "rootfs";
    }
    return fs::path();
  };
  fs::path layer = layerWith("etc/data");
  const fs::path base = layerWith("bin/busybox");
  ASSERT_FALSE(layer.empty());
  struct stat before {};
  ASSERT_EQ(0, ::stat((base / "bin/busybox").c_str(), &before));
  fs::resize_file(layer / "etc/data", 0);
  ASSERT_EQ(0, run({"--image_provisioner_backend=overlay", "provision", "c1", image}).status);

  // The layer c1 mounts stays as it is for c1; new containers get a fresh copy.
  auto held = run({"verify", "--repair"});
  EXPECT_EQ(0, held.status) << held.out << held.err;
  EXPECT_NE(std::string::npos, held.out.find("  kept for the containers that use it, fetched again for new ones: " +
                                             layer.string() + "\n"))
      << held.out;
  EXPECT_NE(std::string::npos,
            held.out.find("  fetched again: 1 layer; now docker://" + image + ":latest  ok  2 layers"))
      << held.out;
  EXPECT_EQ(0u, fs::file_size(layer / "etc/data")) << "a layer a container mounts is not touched";
  auto c2 = run({"--image_provisioner_backend=overlay", "provision", "c2", image});
  ASSERT_EQ(0, c2.status) << c2.err;
  const fs::path c2Rootfs = c2.out.substr(0, c2.out.size() - 1);
  EXPECT_EQ(std::string(4096, 'd'), testing::readFile(c2Rootfs / "etc/data"));
  struct stat after {};
  ASSERT_EQ(0, ::stat((base / "bin/busybox").c_str(), &after));
  EXPECT_EQ(before.st_ino, after.st_ino) << "the whole image was not extracted again";
  EXPECT_EQ(0, run({"verify"}).status);
  // Once c1 is gone, prune removes the retired copy (and keeps the image c2 uses).
  ASSERT_EQ(0, run({"prune"}).status);
  EXPECT_TRUE(fs::exists(layer)) << "c1 still mounts it";
  ASSERT_EQ(0, run({"destroy", "c1"}).status);
  ASSERT_EQ(0, run({"prune"}).status);
  EXPECT_FALSE(fs::exists(layer));
  // The command exits without stopping its actors, once their background
  // work has ended (Provisioner::quiesce): the sweep of gc/ too.
  EXPECT_TRUE(fs::is_empty(workDir_ / "store/docker/gc")) << "the prune's sweep was cut short";
  ASSERT_EQ(0, run({"destroy", "c2"}).status);
  layer = layerWith("etc/data");
  ASSERT_FALSE(layer.empty());

  // From a local OCI layout, while it is there; then with it gone.
  const std::string local = "oci:" + (sandbox() / "layout-repaired").string() + ":latest";
  ASSERT_EQ(0, run({"pull", local}).status);
  fs::resize_file(layer / "etc/data", 10);
  auto fromLayout = run({"--json", "verify", "--repair", local});
  EXPECT_EQ(0, fromLayout.status) << fromLayout.out << fromLayout.err;
  rapidjson::Document doc;
  doc.Parse(fromLayout.out.c_str());
  ASSERT_TRUE(doc.IsArray() && doc.Size() == 1) << fromLayout.out;
  EXPECT_TRUE(doc[0]["repaired"].GetBool());
  EXPECT_FALSE(doc[0]["found"]["ok"].GetBool());
  EXPECT_TRUE(doc[0]["after"]["ok"].GetBool());
  EXPECT_EQ(1u, doc[0]["refetched"].Size());
  layer = layerWith("etc/data");  // extracted again: under the first name free
  ASSERT_FALSE(layer.empty());
  fs::resize_file(layer / "etc/data", 10);
  fs::remove_all(sandbox() / "layout-repaired");
  auto gone = run({"verify", "--repair", local});
  EXPECT_EQ(4, gone.status) << gone.out << gone.err;
  EXPECT_NE(std::string::npos, gone.out.find("  Not repaired: ")) << gone.out;
  EXPECT_EQ(10u, fs::file_size(layer / "etc/data")) << "nothing was moved for a source that is gone";
  auto misplaced = run({"images", "--repair"});
  EXPECT_EQ(2, misplaced.status);
  EXPECT_NE(std::string::npos, misplaced.err.find("--repair is for verify")) << misplaced.err;
}

// --overlay_volatile reaches the mount (the kernel lists the option) and
// --priority is taken by provision; the rootfs works and goes on destroy.
TEST_F(CliTest, OverlayVolatileAndPriorityOnProvision) {
  const std::string image = pushBusybox("busybox");
  auto provisioned = run(
      {"--image_provisioner_backend=overlay", "--overlay_volatile", "--priority=7", "provision", "c1", image});
  ASSERT_EQ(0, provisioned.status) << provisioned.err;
  const std::string rootfs = provisioned.out.substr(0, provisioned.out.size() - 1);
  std::string options;
  std::istringstream table(testing::readFile("/proc/self/mountinfo"));
  for (std::string line; std::getline(table, line);) {
    if (line.find(" " + rootfs + " ") != std::string::npos) options = line.substr(line.rfind(' ') + 1);
  }
  options = "," + options + ",";
  EXPECT_TRUE(options.find(",volatile,") != std::string::npos || options.find(",fsync=volatile,") != std::string::npos)
      << rootfs << ": " << options;
  // Its layers, upperdir and workdir were named through the command's
  // detached copy of the work dir's mount (where the kernel takes one); the
  // rootfs outlives the copy.
  if (testing::overlayTakesDetachedLayers(sandbox())) {
    EXPECT_NE(std::string::npos, options.find("=/proc/self/fd/")) << options;
    EXPECT_EQ(std::string::npos, options.find(workDir_.string())) << options;
  }
  auto ran = testing::runCommand({"chroot", rootfs, "/bin/echo", "volatile"});
  EXPECT_EQ("volatile\n", ran.output);
  EXPECT_EQ(0, run({"destroy", "c1"}).status);
  EXPECT_FALSE(fs::exists(rootfs));
  EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(workDir_));
}

// An ACI built here: `manifest` (an ImageManifest) and rootfs/ with `entries`.
std::string makeAci(const std::string& name, const std::string& version, const std::string& app,
                    const std::string& dependencies, const std::vector<TarEntry>& entries) {
  struct utsname u {};
  ::uname(&u);
  const std::string arch = std::string(u.machine) == "x86_64" ? "amd64" : u.machine;
  const std::string manifest = R"({"acKind":"ImageManifest","acVersion":"0.8.11","name":")" + name +
                               R"(","labels":[{"name":"version","value":")" + version +
                               R"("},{"name":"os","value":"linux"},)" + R"({"name":"arch","value":")" + arch +
                               R"("}])" + (app.empty() ? "" : ",\"app\":" + app) +
                               (dependencies.empty() ? "" : ",\"dependencies\":" + dependencies) + "}";
  std::vector<TarEntry> all = {TarEntry::file("manifest", manifest), TarEntry::directory("rootfs")};
  for (auto entry : entries) {
    entry.path = "rootfs/" + entry.path;
    all.push_back(entry);
  }
  return testing::makeTar(all, testing::TarCompression::Xz);
}

std::string appcArch() {
  struct utsname u {};
  ::uname(&u);
  return std::string(u.machine) == "x86_64" ? "amd64" : u.machine;
}

// An AppC image built from busybox-static, with a dependency, found by
// simple discovery in a local directory: provisioned, run via chroot,
// listed, destroyed and pruned.
// Eight commands at once on one work dir: each waits for the lock in turn
// (--lock_timeout, 60 s by default) and all succeed, each rootfs complete.
TEST_F(CliTest, EightProvisionsAtOnceOnOneWorkDirAllSucceed) {
  const std::string image = pushBusybox("busybox");
  std::string script;
  for (int i = 1; i <= 8; ++i) {
    std::string line;
    for (const auto& a : command({"provision", "p" + std::to_string(i), image})) line += "'" + a + "' ";
    const std::string out = (sandbox() / ("out" + std::to_string(i))).string();
    script += "(" + line + ">'" + out + "' 2>'" + out + ".err'; echo $? >'" + out + ".rc') &\n";
  }
  script += "wait\n";
  auto ran = testing::runCommand({"sh", "-c", script});
  ASSERT_EQ(0, ran.status) << ran.output;
  for (int i = 1; i <= 8; ++i) {
    const fs::path out = sandbox() / ("out" + std::to_string(i));
    EXPECT_EQ("0\n", testing::readFile(out.string() + ".rc")) << testing::readFile(out.string() + ".err");
    std::string rootfs = testing::readFile(out);
    if (!rootfs.empty()) rootfs.pop_back();
    auto echoed = testing::runCommand({"chroot", rootfs, "/bin/echo", "p" + std::to_string(i)});
    EXPECT_EQ("p" + std::to_string(i) + "\n", echoed.output) << rootfs;
  }
  for (int i = 1; i <= 8; ++i) EXPECT_EQ(0, run({"destroy", "p" + std::to_string(i)}).status);
}

// The registry flags on the command line: a TLS registry on 127.0.0.1 is
// refused without its CA (the certificate error, nothing stored), pulled
// with it (--docker_registry_ca), and, in another work dir, pulled
// without verification once listed as insecure, still over TLS.
TEST_F(CliTest, ATlsRegistryOnLoopbackWithItsCaOrListedInsecure) {
  std::string error;
  registry_ = RealRegistry::start(sandbox() / "tls-registry", {.tls = true}, error);
  ASSERT_NE(nullptr, registry_) << error;
  const std::string image = pushBusybox("secure");

  auto refused = run({"pull", image});
  EXPECT_EQ(1, refused.status);
  EXPECT_NE(std::string::npos, refused.err.find("certificate failed verification")) << refused.err;
  EXPECT_EQ("", refused.out);
  EXPECT_EQ(std::string::npos, run({"images"}).out.find("secure"));

  auto pulled = run({"--docker_registry_ca=" + registry_->caFile().string(), "pull", image});
  ASSERT_EQ(0, pulled.status) << pulled.err;
  EXPECT_EQ(0u, pulled.out.find("docker://" + image + ":latest sha256:")) << pulled.out;
  EXPECT_FALSE(fs::exists(workDir_ / "store/docker/plain-registries"));

  workDir_ = sandbox() / "work-insecure";
  auto insecure = run({"--docker_insecure_registries=" + registry_->hostPort(), "pull", image});
  ASSERT_EQ(0, insecure.status) << insecure.err;
  EXPECT_EQ(0u, insecure.out.find("docker://" + image + ":latest sha256:")) << insecure.out;
  EXPECT_FALSE(fs::exists(workDir_ / "store/docker/plain-registries"));
}

// provision --bundle: a bundle runc runs, with the command given after
// "--"; refused into an existing directory (and the new container goes
// again); destroy removes it. Bundle flags without --bundle are usage
// errors; metrics prints the Prometheus text.
TEST_F(CliTest, ProvisionABundleRuncRunsItDestroyRemovesIt) {
  const std::string image = pushBusybox("bundled");
  const fs::path bundle = sandbox() / "bundle1";
  auto made = run({"provision", "c1", image, "--bundle=" + bundle.string(), "--", "/bin/echo", "hello from runc"});
  ASSERT_EQ(0, made.status) << made.err;
  EXPECT_EQ(bundle.string() + "\n", made.out);
  EXPECT_TRUE(fs::exists(bundle / "config.json"));
  auto ran = testing::runCommand(
      {"runc", "--root", (sandbox() / "runc").string(), "run", "--bundle", bundle.string(), "cli-bundle-c1"});
  EXPECT_EQ(0, ran.status) << ran.output;
  EXPECT_EQ("hello from runc\n", ran.output);

  auto taken = run({"provision", "c2", image, "--bundle=" + bundle.string()});
  EXPECT_EQ(1, taken.status);
  EXPECT_NE(std::string::npos, taken.err.find("already exists")) << taken.err;
  EXPECT_EQ("", taken.out);
  // The first column names the container; a storage id may contain "c2".
  auto listed = run({"containers"});
  std::vector<std::string> ids;
  std::istringstream lines(listed.out);
  for (std::string line; std::getline(lines, line);) ids.push_back(line.substr(0, line.find(' ')));
  EXPECT_EQ(std::vector<std::string>{"c1"}, ids) << listed.out;

  EXPECT_EQ(2, run({"provision", "c3", image, "--entrypoint=/bin/sh"}).status);
  EXPECT_EQ(2, run({"images", "--bundle=/tmp/x"}).status);
  EXPECT_EQ(2, run({"provision", "c3", image, "extra"}).status);

  auto metrics = run({"metrics"});
  EXPECT_EQ(0, metrics.status) << metrics.err;
  EXPECT_NE(std::string::npos, metrics.out.find("# TYPE provisioner_containers gauge\nprovisioner_containers 1\n"))
      << metrics.out;
  EXPECT_EQ(0, run({"destroy", "c1"}).status);
  EXPECT_FALSE(fs::exists(bundle));
}

// A holder that keeps the lock past --lock_timeout: the command fails
// naming the holder's pid (here this test's), and changes nothing.
TEST_F(CliTest, AHolderPastTheLockTimeoutIsNamed) {
  fs::create_directories(workDir_);
  const int fd = ::open((workDir_ / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(0, ::flock(fd, LOCK_EX));  // and no pid written: the kernel names the holder
  auto waited = run({"--lock_timeout=0.3", "containers"});
  EXPECT_EQ(1, waited.status);
  EXPECT_EQ("", waited.out);
  EXPECT_NE(std::string::npos,
            waited.err.find("another provisioner (pid " + std::to_string(::getpid()) + ") holds it (waited 0.30 s)"))
      << waited.err;
  auto refused = run({"--lock_timeout=0", "containers"});
  EXPECT_EQ(1, refused.status);
  EXPECT_NE(std::string::npos, refused.err.find("(pid " + std::to_string(::getpid()) + ") holds it\n")) << refused.err;
  // On a terminal, one line says who is waited for.
  auto shown = runOnTerminal({"--lock_timeout=0.3", "containers"});
  EXPECT_EQ(1, shown.status);
  EXPECT_NE(std::string::npos, shown.terminal.find("waiting for " + workDir_.string() + ": another provisioner (pid " +
                                                   std::to_string(::getpid()) + ") uses it (--lock_timeout=0.3s)"))
      << shown.terminal;
  EXPECT_EQ(2, run({"--lock_timeout=-1", "containers"}).status);
  ::close(fd);
  EXPECT_EQ(0, run({"containers"}).status);
}

// Credentials from Debian's real credential helper, docker-credential-pass,
// over `pass` with a throwaway GPG key: --docker_config names it in
// credHelpers, the registry (htpasswd) gets its answer. Without it the
// registry refuses the pull.
TEST_F(CliTest, CredentialsFromDebiansPassHelper) {
  std::string error;
  auto secured = RealRegistry::start(sandbox() / "auth-registry",
                                     {.user = std::make_pair(std::string("alice"), std::string("s3cret"))}, error);
  ASSERT_NE(nullptr, secured) << error;
  testing::ImageSpec spec;
  spec.layers = {busyboxLayer()};
  spec.cmd = {"/bin/sh"};
  OciLayout layout(sandbox() / "layout-private");
  layout.tag(layout.addImage(spec), "latest");
  auto pushed = secured->push("oci:" + layout.dir().string() + ":latest", "test/private:latest", "v2s2");
  ASSERT_EQ(0, pushed.status) << pushed.output;
  const std::string image = secured->hostPort() + "/test/private";

  // A short directory: gpg-agent's socket path must fit in 108 bytes.
  char dir[] = "/tmp/pcred-XXXXXX";
  ASSERT_NE(nullptr, ::mkdtemp(dir));
  const std::string gnupg = std::string(dir) + "/gnupg", store = std::string(dir) + "/store";
  const std::vector<std::string> env = {"env", "GNUPGHOME=" + gnupg, "PASSWORD_STORE_DIR=" + store};
  auto setup = testing::runCommand(
      {"bash", "-c",
       "set -e; umask 077; mkdir -p \"$0\" \"$1\"\n"
       "export GNUPGHOME=\"$0\" PASSWORD_STORE_DIR=\"$1\"\n"
       "printf '%s\\n' '%no-protection' 'Key-Type: eddsa' 'Key-Curve: ed25519' 'Key-Usage: sign' "
       "'Subkey-Type: ecdh' 'Subkey-Curve: cv25519' 'Subkey-Usage: encrypt' 'Name-Real: provisioner test' "
       "'Name-Email: test@example.invalid' 'Expire-Date: 0' '%commit' | gpg --batch --no-tty --quiet --gen-key\n"
       "pass init \"$(gpg --batch --with-colons --list-secret-keys | awk -F: '$1==\"fpr\"{print $10; exit}')\"\n"
       "printf '{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"s3cret\"}' \"$2\" | "
       "docker-credential-pass store",
       gnupg, store, secured->hostPort()});
  struct Cleanup {
    std::string dir, gnupg;
    ~Cleanup() {
      testing::runCommand({"env", "GNUPGHOME=" + gnupg, "gpgconf", "--kill", "gpg-agent"});
      testing::runCommand({"sh", "-c",
                           "for i in $(seq 50); do pgrep -f -- \"--homedir $0\" >/dev/null || exit 0; "
                           "sleep 0.1; done",
                           gnupg});
      std::filesystem::remove_all(dir);
    }
  } cleanup{dir, gnupg};
  ASSERT_EQ(0, setup.status) << setup.output;

  auto withEnv = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = env;
    for (const auto& a : command(args)) argv.push_back(a);
    return testing::runCommand(argv);
  };
  const std::string config = R"(--docker_config={"credHelpers":{")" + secured->hostPort() + R"(":"pass"}})";
  auto provisioned = withEnv({config, "provision", "c1", image});
  ASSERT_EQ(0, provisioned.status) << provisioned.output;
  const std::string rootfs = provisioned.output.substr(0, provisioned.output.find('\n'));
  EXPECT_EQ("private\n", testing::runCommand({"chroot", rootfs, "/bin/echo", "private"}).output);

  // Another work dir (the image not stored yet): without the helper the
  // registry refuses; a credsStore helper that is not installed is named.
  auto elsewhere = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = env;
    argv.push_back(PROV_CLI);
    argv.push_back("--work_dir=" + (sandbox() / "other-work").string());
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::runCommand(argv);
  };
  auto refused = elsewhere({"pull", image});
  EXPECT_EQ(1, refused.status);
  EXPECT_NE(std::string::npos, refused.output.find("the registry asks for credentials and none are configured"))
      << refused.output;
  auto missing = elsewhere({R"(--docker_config={"credsStore":"nothere"})", "pull", image});
  EXPECT_EQ(1, missing.status);
  EXPECT_NE(std::string::npos, missing.output.find("'docker-credential-nothere' is not installed")) << missing.output;
}

TEST_F(CliTest, AppcImageFromBusyboxRunsViaChroot) {
  const fs::path acis = sandbox() / "acis";
  fs::create_directories(acis / "example.com");
  std::ofstream(acis / ("example.com/busybox-latest-linux-" + appcArch() + ".aci"), std::ios::binary)
      << makeAci("example.com/busybox", "latest", "", "", busyboxLayer());
  std::ofstream(acis / ("example.com/hello-1.0-linux-" + appcArch() + ".aci"), std::ios::binary)
      << makeAci("example.com/hello", "1.0",
                 R"({"exec":["/bin/sh","-c","cat /hello"],"user":"0","group":"0",)"
                 R"("environment":[{"name":"PATH","value":"/bin"}],"workingDirectory":"/tmp"})",
                 R"([{"imageName":"example.com/busybox"}])", {TarEntry::file("hello", "hello from appc\n")});
  const std::string prefix = "--appc_simple_discovery_uri_prefix=" + acis.string() + "/";

  auto made = run({prefix, "--json", "provision", "c1", "appc:example.com/hello,version=1.0"});
  ASSERT_EQ(0, made.status) << made.err;
  EXPECT_EQ("", made.err);
  rapidjson::Document doc;
  doc.Parse(made.out.c_str());
  ASSERT_FALSE(doc.HasParseError()) << made.out;
  const std::string rootfs = doc["rootfs"].GetString();
  EXPECT_EQ(0u, std::string(doc["image"]["manifest_digest"].GetString()).find("sha512-")) << made.out;
  EXPECT_EQ(std::string("/bin/sh"), doc["config"]["entrypoint"][0].GetString());
  EXPECT_EQ(std::string("cat /hello"), doc["config"]["entrypoint"][2].GetString());
  EXPECT_EQ(std::string("PATH=/bin"), doc["config"]["env"][0].GetString());
  EXPECT_EQ(std::string("/tmp"), doc["config"]["working_dir"].GetString());
  EXPECT_EQ(std::string("0:0"), doc["config"]["user"].GetString());
  auto ran = testing::runCommand(
      {"chroot", rootfs, "/bin/sh", "-c", "read line < /hello; echo \"$line\"; echo and busybox"});
  EXPECT_EQ(0, ran.status) << ran.output;
  EXPECT_EQ("hello from appc\nand busybox\n", ran.output);

  auto images = run({prefix, "images"});
  EXPECT_EQ(0u, images.out.find("appc:example.com/hello,arch=" + appcArch() + ",os=linux,version=1.0  sha512-"))
      << images.out;
  auto missing = run({prefix, "provision", "c2", "appc:example.com/missing"});
  EXPECT_EQ(1, missing.status);
  EXPECT_EQ("", missing.out);
  EXPECT_EQ(0u, missing.err.find("error: ")) << missing.err;
  EXPECT_NE(std::string::npos, missing.err.find("example.com/missing-latest-linux-")) << missing.err;
  EXPECT_EQ(1, std::count(missing.err.begin(), missing.err.end(), '\n')) << missing.err;

  EXPECT_EQ(0, run({prefix, "destroy", "c1"}).status);
  EXPECT_FALSE(fs::exists(rootfs));
  EXPECT_EQ(0, run({prefix, "prune"}).status);
  EXPECT_EQ("", run({prefix, "images"}).out);
  EXPECT_TRUE(fs::is_empty(workDir_ / "store/appc/images"));
}

// A result that cannot be written (a full disk under stdout) is an error,
// not a silent exit 0; the pull itself is done and kept.
TEST_F(CliTest, AResultThatCannotBeWrittenIsAnError) {
  const std::string image = pushBusybox("busybox");
  std::string line;
  for (const auto& a : command({"pull", image})) line += "'" + a + "' ";
  auto full = testing::runCommand({"sh", "-c", line + "2>&1 >/dev/full"});
  EXPECT_EQ(1, full.status) << full.output;
  EXPECT_EQ("error: Failed to write the result to standard output (what the command did is kept)\n", full.output);
  auto again = run({"pull", image});
  EXPECT_EQ(0, again.status) << again.err;
  EXPECT_EQ(0u, again.out.find("docker://" + image + ":latest sha256:")) << again.out;
}

TEST_F(CliTest, ErrorsAreOneLineOnStderrAndNothingOnStdout) {
  struct Case {
    std::vector<std::string> args;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"provision", "c1", registry_->hostPort() + "/test/nothing"}, 1, "test/nothing"},
      {{"provision", "../x", "busybox"}, 1, "'../x'"},
      {{"provision", "c1", "Not/A/Reference"}, 1, "Not/A/Reference"},
      // A terminal escape in what an error quotes is shown, not obeyed.
      {{"provision", "c1", "\x1b]0;owned\x07\x1b[2Jbad"}, 1, "\\x1b]0;owned\\x07\\x1b[2Jbad"},
      {{"--image_provisioner_backend=aufs", "images"}, 1, "aufs"},
      {{"--image_providers=docker,rkt", "images"}, 1, "rkt"},
      // A pull opens only its image's store, and the flag is checked first.
      {{"--image_providers=docker,rkt", "pull", "busybox"}, 1, "rkt"},
      {{"--image_providers=docker", "pull", "appc:example.com/app"}, 1, "not enabled"},
      {{"frobnicate"}, 2, "frobnicate"},
      {{"provision", "c1"}, 2, "provision"},
      {{"--priority=3", "images"}, 2, "--priority"},
      {{"--image_provisioner_backend=copy", "--overlay_volatile", "images"}, 1, "overlay_volatile"},
      {{"--priority=high", "pull", "busybox"}, 2, "priority"},
  };
  for (const auto& c : cases) {
    auto result = run(c.args);
    EXPECT_EQ(c.status, result.status) << c.args.back() << ": " << result.err;
    EXPECT_EQ("", result.out) << c.args.back();
    EXPECT_EQ(0u, result.err.find("error: ")) << result.err;
    EXPECT_NE(std::string::npos, result.err.find(c.says)) << result.err;
    EXPECT_EQ(std::string::npos, result.err.find('\x1b')) << "a raw escape reached the terminal";
  }
  auto help = run({"--help"});
  EXPECT_EQ(0, help.status);
  EXPECT_NE(std::string::npos, help.out.find("provision CONTAINER_ID IMAGE"));
  EXPECT_NE(std::string::npos, help.out.find("--docker_registry"));
  EXPECT_NE(std::string::npos, help.out.find("--version"));
  auto version = run({"--version"});
  EXPECT_EQ(0, version.status) << version.err;
  EXPECT_EQ(std::string("provisioner ") + kVersion + "\n", version.out);
  EXPECT_EQ("", version.err);
}

// A store dir spelled one way when a container was provisioned (through a
// symlink, with a trailing slash) and another way at prune: the store dir is
// made canonical, and so are the layers the records name, so prune never
// takes a layer a container mounts.
TEST_F(CliTest, AStoreDirSpelledDifferentlyNeverLetsPruneTakeAMountedLayer) {
  const std::string image = pushBusybox("spelled");
  const fs::path real = sandbox() / "store-real", link = sandbox() / "store-link";
  fs::create_directories(real);
  fs::create_directory_symlink(real, link);
  auto provisioned = run(
      {"--docker_store_dir=" + link.string() + "/", "--image_provisioner_backend=overlay", "provision", "c1", image});
  ASSERT_EQ(0, provisioned.status) << provisioned.err;
  const std::string rootfs = provisioned.out.substr(0, provisioned.out.size() - 1);
  auto pruned = run({"--docker_store_dir=" + real.string(), "prune"});
  ASSERT_EQ(0, pruned.status) << pruned.err;
  EXPECT_FALSE(fs::is_empty(real / "layers")) << "a mounted layer was pruned";
  auto ran = testing::runCommand({"chroot", rootfs, "/bin/sh", "-c", "echo still here"});
  EXPECT_EQ("still here\n", ran.output);
  ASSERT_EQ(0, run({"--docker_store_dir=" + real.string(), "destroy", "c1"}).status);
  ASSERT_EQ(0, run({"--docker_store_dir=" + link.string(), "prune"}).status);
  EXPECT_TRUE(fs::is_empty(real / "layers")) << "once unused, they go";
  auto relative = run({"--docker_store_dir=store", "images"});
  EXPECT_EQ(1, relative.status);
  EXPECT_NE(std::string::npos, relative.err.find("--docker_store_dir")) << relative.err;
}

// The limits are flags, listed in --help; past one, the error names it, its
// flag and the image, and nothing is stored.
TEST_F(CliTest, LimitsAreFlagsAndNameThemselves) {
  const std::string image = pushBusybox("limited", {TarEntry::file("tmp/a", "a"), TarEntry::file("tmp/b", "b")});
  struct Case {
    std::string flag;
    std::string says;
  };
  for (const Case& c :
       {Case{"--max_image_layers=1", "--max_image_layers"}, Case{"--max_image_bytes=100000", "--max_image_bytes"},
        Case{"--max_layer_bytes=100000", "--max_layer_bytes"}, Case{"--max_layer_entries=2", "--max_layer_entries"}}) {
    auto result = run({c.flag, "pull", image});
    EXPECT_EQ(1, result.status) << c.flag << ": " << result.err;
    EXPECT_NE(std::string::npos, result.err.find(c.says)) << result.err;
    EXPECT_NE(std::string::npos, result.err.find("test/limited")) << result.err;
    auto images = run({"images"});
    EXPECT_EQ(0, images.status) << images.err;
    EXPECT_EQ(std::string::npos, images.out.find("test/limited")) << images.out;
  }
  auto zero = run({"--max_image_layers=0", "images"});
  EXPECT_EQ(1, zero.status);
  EXPECT_NE(std::string::npos, zero.err.find("max_image_layers")) << zero.err;
  EXPECT_EQ(0, run({"pull", image}).status) << "the defaults let it through";

  auto help = run({"--help"});
  for (const char* flag : {"--max_layer_bytes", "--max_layer_entries", "--max_image_bytes", "--max_image_layers"}) {
    EXPECT_NE(std::string::npos, help.out.find(flag)) << flag;
  }
}

TEST_F(CliTest, KillNineDuringAPullThenEverythingIsConsistent) {
  std::vector<TarEntry> many;
  for (int d = 0; d < 40; ++d) {
    for (int f = 0; f < 1000; ++f) {
      many.push_back(TarEntry::file("data/d" + std::to_string(d) + "/f" + std::to_string(f), std::string(300, 'x')));
    }
  }
  const std::string image = pushBusybox("big", many);
  const auto argv = command({"pull", image});
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  bool midway = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!midway && std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    for (const auto& staged : fs::directory_iterator(workDir_ / "store/docker/staging", ec)) {
      if (fs::exists(staged.path() / "rootfs/data/d5")) midway = true;
    }
    if (!midway) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // While it holds the work dir, another run (not waiting) is refused, naming it.
  if (midway) {
    auto refused = run({"--lock_timeout=0", "images"});
    EXPECT_EQ(1, refused.status);
    EXPECT_NE(std::string::npos, refused.err.find("pid " + std::to_string(child))) << refused.err;
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(midway) << "the pull never got into its big layer";
  ASSERT_TRUE(WIFSIGNALED(status)) << "the pull finished before it was killed";

  auto images = run({"images"});  // recovers first
  EXPECT_EQ(0, images.status) << images.err;
  EXPECT_EQ("", images.out) << "no half-pulled image is listed";
  EXPECT_TRUE(fs::is_empty(workDir_ / "store/docker/staging"));
  auto pulled = run({"provision", "c1", image});
  ASSERT_EQ(0, pulled.status) << pulled.err;
  const std::string rootfs = pulled.out.substr(0, pulled.out.size() - 1);
  EXPECT_TRUE(fs::exists(fs::path(rootfs) / "data/d39/f999"));
  EXPECT_EQ(0, testing::runCommand({"chroot", rootfs, "/bin/echo", "ok"}).status);
}

TEST_F(CliTest, ProgressDisplayOnATerminalAndNothingOnAPipe) {
  // busybox (about 1 MiB), 64 MiB of random bytes (long enough that the
  // display redraws in place), and a few bytes.
  std::string noise(64 << 20, '\0');
  std::mt19937_64 random(42);
  for (std::size_t i = 0; i < noise.size(); i += 8) {
    const auto value = random();
    std::memcpy(&noise[i], &value, 8);
  }
  const std::string image = pushLayers(
      "progress", {busyboxLayer(), {TarEntry::file("noise", noise)}, {TarEntry::file("hello", "hello\n")}});
  const auto layers = layersOf(image);
  ASSERT_EQ(3u, layers.size());
  ASSERT_LT(layers[2].second, 1024) << "the small layer shows an exact byte count";

  auto pulled = runOnTerminal({"pull", image});
  ASSERT_EQ(0, pulled.status) << pulled.terminal;
  EXPECT_EQ(0u, pulled.out.find("docker://" + image + ":latest sha256:")) << pulled.out;
  // The last frame: every layer, base first, done, its whole size, a rate.
  auto frame = lastFrame(pulled.terminal);
  ASSERT_EQ(3u, frame.size()) << pulled.terminal;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const std::string size = regexEscape(humanBytes(layers[i].second));
    const std::regex done(shortDigest(layers[i].first) + " +done +" + size + " / " + size + R"( +[0-9]+\.[0-9] MiB/s)");
    EXPECT_TRUE(std::regex_match(frame[i], done)) << "layer " << i << ": '" << frame[i] << "'";
  }
  // Live: earlier frames were drawn over (cursor up three lines, clear line),
  // one of them showing the big layer on its way.
  const std::size_t last = pulled.terminal.rfind("\x1b[3A");
  ASSERT_NE(std::string::npos, last) << "drawn once only: " << pulled.terminal;
  const std::regex moving(shortDigest(layers[1].first) + R"( +(downloading|extracting) +[0-9.]+ [KM]?i?B / 64\.0 MiB)");
  EXPECT_TRUE(std::regex_search(pulled.terminal.substr(0, last), moving)) << pulled.terminal;
  EXPECT_NE(std::string::npos, pulled.terminal.find("\r\x1b[2K")) << "lines are cleared before they are drawn";

  // stderr a pipe: nothing on it, the same pull to a fresh work dir.
  const fs::path terminalWorkDir = workDir_;
  workDir_ = sandbox() / "work-piped";
  auto piped = run({"--json", "pull", image});
  EXPECT_EQ(0, piped.status) << piped.err;
  EXPECT_EQ("", piped.err);
  EXPECT_NE(std::string::npos, piped.out.find("manifest_digest")) << piped.out;
  workDir_ = terminalWorkDir;

  // An image already stored pulls nothing and shows nothing.
  auto cached = runOnTerminal({"pull", image});
  EXPECT_EQ(0, cached.status) << cached.terminal;
  EXPECT_EQ("", cached.terminal);

  // Another image on the same base (the same tar, so the same diffID, chain
  // id and blob): provision (with --json, which goes to stdout) shows the
  // base as cached and fetches only its own layer, which starts before the
  // config and so reports first; the base is still drawn first.
  const std::string other = pushLayers("progress-other", {busyboxLayer(), {TarEntry::file("hello", "other\n")}});
  const auto otherLayers = layersOf(other);
  ASSERT_EQ(2u, otherLayers.size());
  auto provisioned = runOnTerminal({"--json", "provision", "c1", other});
  ASSERT_EQ(0, provisioned.status) << provisioned.terminal;
  EXPECT_EQ('{', provisioned.out[0]) << provisioned.out;
  frame = lastFrame(provisioned.terminal);
  ASSERT_EQ(2u, frame.size()) << provisioned.terminal;
  const std::string base = regexEscape(humanBytes(otherLayers[0].second));
  EXPECT_TRUE(std::regex_match(frame[0], std::regex(shortDigest(otherLayers[0].first) + " +cached +" + base)))
      << frame[0];
  const std::string top = regexEscape(humanBytes(otherLayers[1].second));
  EXPECT_TRUE(std::regex_match(frame[1], std::regex(shortDigest(otherLayers[1].first) + " +done +" + top + " / " + top +
                                                    R"( +[0-9]+\.[0-9] MiB/s)")))
      << frame[1];

  // An error is one clean line, on a terminal too.
  auto failed = runOnTerminal({"pull", registry_->hostPort() + "/test/nothing"});
  EXPECT_EQ(1, failed.status);
  EXPECT_EQ(0u, failed.terminal.find("error: ")) << failed.terminal;
  EXPECT_EQ(failed.terminal.size() - 2, failed.terminal.find("\r\n")) << failed.terminal;
}

}  // namespace
}  // namespace prov
