// The provisioner command as a subprocess against the real registry
// (Debian's docker-registry, images pushed by skopeo): pull, provision with
// overlay and with copy, a command run in the rootfs via chroot, containers,
// images, destroy (exit 3 for an unknown id), prune, errors; and kill -9 in
// the middle of a pull, then a consistent store on the next run.

#include <rapidjson/document.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>

#include "tests/support/files.hpp"
#include "tests/support/image_builder.hpp"
#include "tests/support/real_registry.hpp"
#include "tests/support/temp_dir.hpp"

#ifndef PROV_CLI
#error "PROV_CLI must name the provisioner executable"
#endif

namespace prov {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::OciLayout;
using testing::RealRegistry;
using testing::TarEntry;

class CliTest : public testing::TemporaryDirectoryTest {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    std::string error;
    registry_ = RealRegistry::start(sandbox() / "registry", {}, error);
    ASSERT_NE(nullptr, registry_) << error;
    workDir_ = sandbox() / "work";
  }

  void TearDown() override {
    run({"destroy", "c1"});
    run({"destroy", "c2"});
    registry_.reset();
    EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(sandbox())) << "a mount leaked";
    TemporaryDirectoryTest::TearDown();
  }

  // A runnable image from Debian's busybox-static, pushed as test/<name>.
  std::string pushBusybox(const std::string& name, std::vector<TarEntry> extra = {}) {
    testing::ImageSpec spec;
    spec.layers = {{TarEntry::directory("bin"), TarEntry::file("bin/busybox", testing::readFile("/bin/busybox"), 0755),
                    TarEntry::symlink("bin/sh", "busybox"), TarEntry::symlink("bin/echo", "busybox"),
                    TarEntry::directory("tmp", 01777)}};
    if (!extra.empty()) spec.layers.push_back(extra);
    spec.env = {"PATH=/bin"};
    spec.cmd = {"/bin/sh"};
    spec.workingDir = "/tmp";
    OciLayout layout(sandbox() / ("layout-" + name));
    layout.tag(layout.addImage(spec), "latest");
    auto pushed = registry_->push("oci:" + layout.dir().string() + ":latest", "test/" + name + ":latest", "v2s2");
    EXPECT_EQ(0, pushed.status) << pushed.output;
    return registry_->hostPort() + "/test/" + name;
  }

  std::vector<std::string> command(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {PROV_CLI, "--work_dir=" + workDir_.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // stdout and stderr apart.
  struct Output {
    int status;
    std::string out;
    std::string err;
  };
  Output run(const std::vector<std::string>& args) const {
    std::string line;
    for (const auto& a : command(args)) line += "'" + a + "' ";
    const fs::path err = sandbox() / "stderr";
    auto result = testing::runCommand({"sh", "-c", line + "2>'" + err.string() + "'"});
    std::string errText = fs::exists(err) ? testing::readFile(err) : "";
    return {result.status, result.output, errText};
  }

  std::unique_ptr<RealRegistry> registry_;
  fs::path workDir_;
};

TEST_F(CliTest, PullProvisionRunDestroyPrune) {
  const std::string image = pushBusybox("busybox");
  auto pulled = run({"pull", image});
  ASSERT_EQ(0, pulled.status) << pulled.err;
  EXPECT_EQ(0u, pulled.out.find("docker://" + image + ":latest sha256:")) << pulled.out;

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
  EXPECT_EQ(1u, doc.Size());

  EXPECT_EQ(0, run({"destroy", "c1"}).status);
  EXPECT_FALSE(fs::exists(rootfs));
  auto again = run({"destroy", "c1"});
  EXPECT_EQ(3, again.status);
  EXPECT_EQ("", again.out);
  EXPECT_EQ(0u, again.err.find("error: ")) << again.err;
  EXPECT_EQ(0, run({"prune"}).status);
  EXPECT_NE("", run({"images"}).out) << "c2 still uses the image: it stays";
  EXPECT_EQ(0, run({"destroy", "c2"}).status);
  EXPECT_EQ(0, run({"prune", "--exclude=" + image}).status);
  EXPECT_NE("", run({"images"}).out) << "an excluded image stays";
  EXPECT_EQ(0, run({"prune"}).status);
  EXPECT_EQ("", run({"images"}).out);
  EXPECT_TRUE(fs::is_empty(workDir_ / "store/docker/layers"));
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
      {{"--image_provisioner_backend=aufs", "images"}, 1, "aufs"},
      {{"--image_providers=docker,rkt", "images"}, 1, "rkt"},
      {{"frobnicate"}, 2, "frobnicate"},
      {{"provision", "c1"}, 2, "provision"},
  };
  for (const auto& c : cases) {
    auto result = run(c.args);
    EXPECT_EQ(c.status, result.status) << c.args.back() << ": " << result.err;
    EXPECT_EQ("", result.out) << c.args.back();
    EXPECT_EQ(0u, result.err.find("error: ")) << result.err;
    EXPECT_NE(std::string::npos, result.err.find(c.says)) << result.err;
  }
  auto help = run({"--help"});
  EXPECT_EQ(0, help.status);
  EXPECT_NE(std::string::npos, help.out.find("provision CONTAINER_ID IMAGE"));
  EXPECT_NE(std::string::npos, help.out.find("--docker_registry"));
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
  // While it holds the work dir, another run is refused, naming it.
  if (midway) {
    auto refused = run({"images"});
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

}  // namespace
}  // namespace prov
