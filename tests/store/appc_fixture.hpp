#pragma once

// AppcStoreTest: an AppC store under the test's sandbox whose simple
// discovery prefix is a local directory of ACIs (or, with useHttp(), a fake
// HTTP server), and helpers to build ACIs from tar entries.

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "fetcher/appc.hpp"
#include "fetcher/digest.hpp"
#include "store/appc_store.hpp"
#include "testkit/image_builder.hpp"
#include "tests/support/await.hpp"
#include "tests/support/fake_registry.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::store {

struct AciSpec {
  std::string name;
  std::map<std::string, std::string> labels = {{"version", "latest"}, {"os", "linux"}};  // arch: the host's
  std::vector<std::string> exec = {"/bin/sh"};
  std::vector<std::string> environment = {"PATH=/bin"};
  std::string workingDirectory = "/";
  struct Dependency {
    std::string name;
    std::string id;
    std::map<std::string, std::string> labels;
  };
  std::vector<Dependency> dependencies;
  std::vector<testing::TarEntry> rootfs;  // paths relative to rootfs/
};

inline std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

inline std::string labelsJson(const std::map<std::string, std::string>& labels) {
  std::string out = "[";
  for (const auto& [name, value] : labels) {
    out += std::string(out.size() > 1 ? "," : "") + "{\"name\":" + jsonString(name) +
           ",\"value\":" + jsonString(value) + "}";
  }
  return out + "]";
}

inline std::string manifestJson(const AciSpec& spec) {
  auto labels = spec.labels;
  labels.insert({"arch", fetcher::hostAppcArch()});
  std::string exec = "[";
  for (const auto& arg : spec.exec) exec += std::string(exec.size() > 1 ? "," : "") + jsonString(arg);
  exec += "]";
  std::string env = "[";
  for (const auto& variable : spec.environment) {
    const auto eq = variable.find('=');
    env += std::string(env.size() > 1 ? "," : "") + "{\"name\":" + jsonString(variable.substr(0, eq)) +
           ",\"value\":" + jsonString(variable.substr(eq + 1)) + "}";
  }
  env += "]";
  std::string deps = "[";
  for (const auto& d : spec.dependencies) {
    deps += std::string(deps.size() > 1 ? "," : "") + "{\"imageName\":" + jsonString(d.name);
    if (!d.id.empty()) deps += ",\"imageID\":" + jsonString(d.id);
    if (!d.labels.empty()) deps += ",\"labels\":" + labelsJson(d.labels);
    deps += "}";
  }
  deps += "]";
  return "{\"acKind\":\"ImageManifest\",\"acVersion\":\"0.8.11\",\"name\":" + jsonString(spec.name) +
         ",\"labels\":" + labelsJson(labels) + ",\"app\":{\"exec\":" + exec +
         ",\"user\":\"0\",\"group\":\"0\",\"environment\":" + env +
         ",\"workingDirectory\":" + jsonString(spec.workingDirectory) + "},\"dependencies\":" + deps + "}";
}

// The tar entries of an ACI: manifest, rootfs/, then rootfs/<each>.
inline std::vector<testing::TarEntry> aciEntries(const std::string& manifest,
                                                 const std::vector<testing::TarEntry>& rootfs) {
  std::vector<testing::TarEntry> entries = {testing::TarEntry::file("manifest", manifest),
                                            testing::TarEntry::directory("rootfs")};
  for (auto entry : rootfs) {
    entry.path = "rootfs/" + entry.path;
    if (entry.type == testing::TarEntry::Type::Hardlink) entry.content = "rootfs/" + entry.content;
    entries.push_back(entry);
  }
  return entries;
}

inline std::string makeAci(const AciSpec& spec, testing::TarCompression compression = testing::TarCompression::Gzip) {
  return testing::makeTar(aciEntries(manifestJson(spec), spec.rootfs), compression);
}

// "sha512-<hex>" of an uncompressed ACI.
inline std::string aciId(const std::string& uncompressed) {
  auto hasher = fetcher::Hasher::create("sha512");
  hasher->update(uncompressed);
  return "sha512-" + hasher->finish().substr(7);
}

class AppcStoreTest : public testing::TemporaryDirectoryTest {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    storeDir_ = sandbox() / "store";
    acis_ = sandbox() / "acis";
    std::filesystem::create_directories(acis_);
    restartStore();
  }

  void TearDown() override {
    store_.reset();
    TemporaryDirectoryTest::TearDown();
  }

  // The discovery prefix: the ACI directory, or the fake server's /acis/.
  std::string prefix() const { return http_ ? server_.url() + "/acis/" : acis_.string() + "/"; }

  void useHttp() {
    http_ = true;
    restartStore();
  }

  // A new store object over the same directory, recovered.
  void restartStore() {
    store_.reset();
    fetcher::AppcFetchOptions fetch;
    fetch.prefix = prefix();
    fetch.retry = fetcher::RetryPolicy{.maxAttempts = 3,
                                       .initialDelay = std::chrono::milliseconds(1),
                                       .maxDelay = std::chrono::milliseconds(5),
                                       .multiplier = 2.0,
                                       .jitter = 0.1};
    auto fetcher = fetcher::AppcFetcher::create(runtime_, fetch);
    ASSERT_TRUE(fetcher.isSome()) << fetcher.error().message;
    AppcStoreOptions options;
    options.storeDir = storeDir_.string();
    options.syncImages = false;
    options.extractor = extractor_;
    auto store = AppcStore::create(runtime_, options, std::move(*fetcher));
    ASSERT_TRUE(store.isSome()) << store.error().message;
    store_ = std::move(*store);
    AWAIT_READY(store_->recover());
  }

  // Where simple discovery finds `name` with `version`.
  std::string discoveryName(const std::string& name, const std::string& version = "latest") const {
    return name + "-" + version + "-linux-" + fetcher::hostAppcArch() + ".aci";
  }

  // Publishes ACI bytes under the image's discovery name (locally and on
  // the fake server).
  void publishBytes(const std::string& name, const std::string& bytes, const std::string& version = "latest") {
    const auto path = acis_ / discoveryName(name, version);
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
    server_.putFile("/acis/" + discoveryName(name, version), bytes);
  }

  // Publishes an image; returns its id.
  std::string publish(const AciSpec& spec) {
    publishBytes(spec.name, makeAci(spec), spec.labels.count("version") ? spec.labels.at("version") : "latest");
    return aciId(makeAci(spec, testing::TarCompression::None));
  }

  // "example.com/top" (tmp/test says "top") on its dependency
  // "example.com/base" (tmp/test says "test"); their ids.
  std::pair<std::string, std::string> publishTopOnBase() {
    AciSpec base;
    base.name = "example.com/base";
    base.rootfs = {testing::TarEntry::directory("tmp"), testing::TarEntry::file("tmp/test", "test")};
    AciSpec top = base;
    top.name = "example.com/top";
    top.rootfs = {testing::TarEntry::directory("tmp"), testing::TarEntry::file("tmp/test", "top")};
    top.dependencies = {{"example.com/base", "", {}}};
    return {publish(base), publish(top)};
  }

  static messages::Image appcImage(const std::string& name, std::map<std::string, std::string> labels = {}) {
    messages::Image image;
    image.set_type(messages::Image::APPC);
    image.mutable_appc()->set_name(name);
    image.mutable_appc()->mutable_labels()->insert(labels.begin(), labels.end());
    return image;
  }

  std::vector<std::string> storedImages() const {
    std::vector<std::string> ids;
    for (const auto& e : std::filesystem::directory_iterator(storeDir_ / "images")) ids.push_back(e.path().filename());
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  bool stagingEmpty() const { return std::filesystem::is_empty(storeDir_ / "staging"); }

  actors::Runtime runtime_;
  testing::FakeRegistry server_;
  bool http_ = false;
  std::filesystem::path storeDir_, acis_;
  std::unique_ptr<AppcStore> store_;
  std::shared_ptr<Extractor> extractor_;  // null: the store makes its own
};

}  // namespace prov::store
