#pragma once

// CliTest: the provisioner command (PROV_CLI) run as a subprocess on a
// work dir in the sandbox, against the real registry of RealRegistryTest;
// images made with testkit and pushed by skopeo. TearDown destroys c1 and
// c2 and checks that no mount leaked.

#include <fcntl.h>
#include <pty.h>
#include <rapidjson/document.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "testkit/files.hpp"
#include "testkit/image_builder.hpp"
#include "testkit/real_registry.hpp"
#include "tests/support/registry_fixture.hpp"

#ifndef PROV_CLI
#error "PROV_CLI must name the provisioner executable"
#endif

namespace prov::clitest {

namespace fs = std::filesystem;
using testing::OciLayout;
using testing::TarEntry;

class CliTest : public testing::RealRegistryTest {
 protected:
  void SetUp() override {
    RealRegistryTest::SetUp();
    if (HasFatalFailure()) return;
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
    std::vector<std::vector<TarEntry>> layers = {busyboxLayer()};
    if (!extra.empty()) layers.push_back(extra);
    return pushLayers(name, layers);
  }

  static std::vector<TarEntry> busyboxLayer() {
    return {TarEntry::directory("bin"), TarEntry::file("bin/busybox", testing::readFile("/bin/busybox"), 0755),
            TarEntry::symlink("bin/sh", "busybox"), TarEntry::symlink("bin/echo", "busybox"),
            TarEntry::directory("tmp", 01777)};
  }

  std::string pushLayers(const std::string& name, const std::vector<std::vector<TarEntry>>& layers) {
    auto pushed = registry_->push(layoutOf(name, layers), "test/" + name + ":latest", "v2s2");
    EXPECT_EQ(0, pushed.status) << pushed.output;
    return registry_->hostPort() + "/test/" + name;
  }

  // An OCI layout in the sandbox holding one runnable image, as skopeo
  // names it ("oci:DIR:latest").
  std::string layoutOf(const std::string& name, const std::vector<std::vector<TarEntry>>& layers) {
    testing::ImageSpec spec;
    spec.layers = layers;
    spec.env = {"PATH=/bin"};
    spec.cmd = {"/bin/sh"};
    spec.workingDir = "/tmp";
    OciLayout layout(sandbox() / ("layout-" + name));
    layout.tag(layout.addImage(spec), "latest");
    return "oci:" + layout.dir().string() + ":latest";
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

  // stderr (and stdin) a pseudo-terminal 200 columns wide, stdout a file:
  // `terminal` is everything the terminal got, until the last close.
  struct TerminalOutput {
    int status;
    std::string terminal;
    std::string out;
  };
  TerminalOutput runOnTerminal(const std::vector<std::string>& args) const {
    const auto argv = command(args);
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    const std::string out = (sandbox() / "stdout").string();
    winsize size{};
    size.ws_row = 50;
    size.ws_col = 200;
    int master = -1;
    const pid_t child = ::forkpty(&master, nullptr, nullptr, &size);
    if (child < 0) return {-1, "forkpty: " + std::string(std::strerror(errno)), ""};
    if (child == 0) {
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0 || ::dup2(fd, STDOUT_FILENO) < 0) ::_exit(126);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    std::string terminal;
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::read(master, buffer, sizeof buffer);
      if (n > 0) {
        terminal.append(buffer, static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        break;  // EIO: the slave side is closed everywhere
      }
    }
    ::close(master);
    int status = 0;
    ::waitpid(child, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, terminal, testing::readFile(out)};
  }

  // The layers of test/<name>:latest as the registry serves them: (blob digest, size).
  std::vector<std::pair<std::string, std::int64_t>> layersOf(const std::string& image) const {
    auto raw = testing::runCommand(
        {"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + image + ":latest"});
    EXPECT_EQ(0, raw.status) << raw.output;
    rapidjson::Document doc;
    doc.Parse(raw.output.c_str());
    std::vector<std::pair<std::string, std::int64_t>> layers;
    if (doc.HasParseError() || !doc.HasMember("layers")) return layers;
    for (const auto& layer : doc["layers"].GetArray()) {
      layers.emplace_back(layer["digest"].GetString(), layer["size"].GetInt64());
    }
    return layers;
  }

  fs::path workDir_;
};

}  // namespace prov::clitest
