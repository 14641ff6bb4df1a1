#include "tests/support/temp_dir.hpp"

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
    ADD_FAILURE() << "Failed to create a temporary directory '" << pattern
                  << "': " << std::strerror(errno);
    std::abort();
  }
  return std::filesystem::path(buffer.data());
}

void TemporaryDirectoryTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  sandbox_ = makeTemporaryDirectory(std::string("prov-") + info->name());
}

void TemporaryDirectoryTest::TearDown() {
  std::error_code ec;
  std::filesystem::remove_all(sandbox_, ec);
  EXPECT_FALSE(ec) << "Failed to remove '" << sandbox_ << "': " << ec.message();
}

}  // namespace prov::testing
