#include "tests/support/temp_dir.hpp"

#include "actors/fs.hpp"

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
