#include "tests/support/temp_dir.hpp"

#include "actors/disk.hpp"
#include "actors/fs.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace prov::testing {

std::filesystem::path makeTemporaryDirectory(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    ADD_FAILURE() << "Failed to create a temporary directory '" << pattern << "': " << std::strerror(errno);
    std::abort();
  }
  return std::filesystem::path(buffer.data());
}

namespace {
std::vector<std::filesystem::path>& created() {
  static std::vector<std::filesystem::path> paths;
  return paths;
}
}  // namespace

std::vector<std::filesystem::path> sandboxesCreated() { return created(); }

namespace {

// With PROV_TEST_OLD_KERNEL=1 in the environment, the whole run takes the
// paths a kernel before 5.8 makes the library take: openat2 fails with
// ENOSYS (so every resolution beneath a root walks component by component)
// and STATX_ATTR_MOUNT_ROOT is ignored (so mount roots are found by
// comparing with the parent). A run in which no openat2 was refused fails:
// the hook did not take.
class NoOpenat2Disk final : public actors::fs::Disk {
 public:
  std::atomic<long> refused{0};

 protected:
  int before(actors::fs::DiskCall call, const char*) override {
    if (call != actors::fs::DiskCall::Resolve) return 0;
    ++refused;
    return ENOSYS;
  }
};

class OldKernel final : public ::testing::Environment {
 public:
  void SetUp() override {
    actors::fs::installDisk(&disk_);
    actors::fs::forceMountRootFallback(true);
  }
  void TearDown() override {
    actors::fs::installDisk(nullptr);
    actors::fs::forceMountRootFallback(false);
    EXPECT_GT(disk_.refused.load(), 0) << "PROV_TEST_OLD_KERNEL: no openat2 call was made to refuse";
  }

 private:
  NoOpenat2Disk disk_;
};

[[maybe_unused]] const bool oldKernel = [] {
  const char* value = std::getenv("PROV_TEST_OLD_KERNEL");
  if (value != nullptr && std::string(value) == "1") ::testing::AddGlobalTestEnvironment(new OldKernel);
  return true;
}();

}  // namespace

void TemporaryDirectoryTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info->name();  // parameterised tests have '/' in their names
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  sandbox_ = makeTemporaryDirectory("prov-" + name);
  created().push_back(sandbox_);
}

void TemporaryDirectoryTest::TearDown() {
  // removeTree refuses to descend into a mount: a test that leaves one
  // behind fails here instead of deleting through it.
  auto removed = actors::fs::removeTree(sandbox_.string());
  EXPECT_TRUE(removed.isSome()) << removed.error().message;
}

}  // namespace prov::testing
