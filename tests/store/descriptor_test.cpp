// No descriptor of ours reaches an agent's child (the CVE-2024-21626
// pattern): every descriptor the library has open in the middle of a pull's
// extraction and of a copy-backend provision is close-on-exec, and a child
// forked and exec'd meanwhile sees none of them.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/disk.hpp"
#include "actors/runtime.hpp"
#include "backend/backend.hpp"
#include "fetcher/local/local.hpp"
#include "fetcher/puller.hpp"
#include "store/image_store.hpp"
#include "testkit/image_builder.hpp"
#include "testkit/real_registry.hpp"
#include "tests/store/store_fixture.hpp"
#include "tests/support/await.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using testing::TarEntry;

std::set<int> openDescriptors() {
  std::set<int> fds;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc/self/fd", ec)) {
    fds.insert(std::stoi(entry.path().filename().string()));
  }
  return fds;
}

// The "flags:" line of /proc/self/fdinfo/<fd> (octal), or -1 once closed.
long descriptorFlags(int fd) {
  const std::string path = "/proc/self/fdinfo/" + std::to_string(fd);
  const int info = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (info < 0) return -1;
  char buffer[512];
  const ssize_t n = ::read(info, buffer, sizeof buffer - 1);
  ::close(info);
  if (n <= 0) return -1;
  const std::string text(buffer, static_cast<std::size_t>(n));
  const auto at = text.find("flags:");
  return at == std::string::npos ? -1 : std::stol(text.substr(at + 6), nullptr, 8);
}

// Installed as the disk seam: at every 5th call the library makes, each
// descriptor opened since the audit began must be close-on-exec; once, in
// the middle, a child is spawned and lists the descriptors it inherited.
class DescriptorAudit : public actors::fs::Disk {
 public:
  // The fake registry in the same process accepts with SOCK_CLOEXEC, so its
  // sockets need no exemption here.
  DescriptorAudit() : previous_(actors::fs::installDisk(this)), baseline_(openDescriptors()) {}
  ~DescriptorAudit() override { actors::fs::installDisk(previous_); }

  std::vector<std::string> violations() const {
    std::lock_guard lock(mutex_);
    return violations_;
  }
  long audits() const {
    std::lock_guard lock(mutex_);
    return audits_;
  }
  bool childLooked() const {
    std::lock_guard lock(mutex_);
    return childLooked_;
  }

 protected:
  int before(actors::fs::DiskCall call, const char* path) override {
    std::lock_guard lock(mutex_);
    if (++calls_ % 5 != 0) return 0;
    ++audits_;
    for (int fd : openDescriptors()) {
      if (baseline_.count(fd) > 0) continue;
      const long flags = descriptorFlags(fd);
      if (flags >= 0 && (flags & O_CLOEXEC) == 0) {
        std::error_code ec;
        violations_.push_back("fd " + std::to_string(fd) + " (" +
                              fs::read_symlink("/proc/self/fd/" + std::to_string(fd), ec).string() + ") during " +
                              actors::fs::name(call) + " '" + path + "'");
      }
    }
    if (audits_ == 20) lookFromAChild();
    return 0;
  }

 private:
  // A child spawned now lists its descriptors: none but its own and those
  // it had before the audit began.
  void lookFromAChild() {
    const auto listed = testing::runCommand({"ls", "/proc/self/fd"});
    childLooked_ = listed.status == 0;
    std::istringstream names(listed.output);
    for (std::string name; names >> name;) {
      const int fd = std::stoi(name);
      if (fd > 3 && baseline_.count(fd) == 0) {
        violations_.push_back("a child inherited fd " + name);
      }
    }
  }

  actors::fs::Disk* previous_;
  const std::set<int> baseline_;
  mutable std::mutex mutex_;
  long calls_ = 0, audits_ = 0;
  bool childLooked_ = false;
  std::vector<std::string> violations_;
};

class DescriptorTest : public testing::TemporaryDirectoryTest {
 protected:
  actors::Runtime runtime_;
};

TEST_F(DescriptorTest, EveryDescriptorOfAnExtractionAndACopyIsCloseOnExec) {
  testing::OciLayout layout(sandbox() / "layout");
  testing::ImageSpec spec;
  spec.architecture = fetcher::hostPlatform().architecture();
  std::vector<TarEntry> many;
  for (int d = 0; d < 20; ++d) {
    many.push_back(TarEntry::directory("d" + std::to_string(d)));
    for (int f = 0; f < 50; ++f) {
      many.push_back(TarEntry::file("d" + std::to_string(d) + "/f" + std::to_string(f), std::string(300, 'x')));
    }
  }
  spec.layers = {{TarEntry::file("etc/os", "base")}, many};
  layout.tag(layout.addImage(spec), "v1");
  messages::Image local;
  local.set_type(messages::Image::OCI_LAYOUT);
  local.set_path(layout.dir().string());
  local.set_layout_tag("v1");
  auto created = fetcher::OciLayoutPuller::create(runtime_);
  ASSERT_TRUE(created.isSome()) << created.error().message;
  std::shared_ptr<fetcher::Puller> puller(std::move(*created));
  ImageStoreOptions options;
  options.storeDir = (sandbox() / "store").string();
  options.syncLayers = false;
  auto store = ImageStore::create(runtime_, options, [puller](const messages::Image&) { return puller; });
  ASSERT_TRUE(store.isSome()) << store.error().message;
  auto copy = backend::createBackend(runtime_, backend::kCopy);
  ASSERT_TRUE(copy.isSome()) << copy.error().message;

  DescriptorAudit audit;
  AWAIT_READY((*store)->recover());
  auto info = (*store)->get(local);
  AWAIT_READY(info);
  auto rootfs = (*copy)->provision(info->layers, (sandbox() / "rootfs").string(), (sandbox() / "backend").string());
  AWAIT_READY(rootfs);
  EXPECT_EQ(std::vector<std::string>{}, audit.violations());
  EXPECT_GT(audit.audits(), 200) << "the audit saw too little of the work";
  EXPECT_TRUE(audit.childLooked());
  AWAIT_READY((*copy)->destroy((sandbox() / "rootfs").string(), (sandbox() / "backend").string()));
}

// The registry's connections too: a pull from the fake registry holds only
// close-on-exec descriptors.
TEST_F(ImageStoreTest, EveryDescriptorOfARegistryPullIsCloseOnExec) {
  std::vector<TarEntry> many;
  for (int f = 0; f < 400; ++f) many.push_back(TarEntry::file("f" + std::to_string(f), randomBytes(2048)));
  publish("test/descriptors", "latest", {{TarEntry::file("etc/os", "base")}, many});
  DescriptorAudit audit;
  auto info = store_->get(dockerImage(registry_.hostPort() + "/test/descriptors"));
  AWAIT_READY(info);
  EXPECT_EQ(std::vector<std::string>{}, audit.violations());
  EXPECT_GT(audit.audits(), 50) << "the audit saw too little of the work";
  EXPECT_TRUE(audit.childLooked());
}

}  // namespace
}  // namespace prov::store
