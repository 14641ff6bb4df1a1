#pragma once

// TemporaryDirectoryTest: a fixture that gives each test a fresh directory
// (under $TMPDIR or /tmp) and removes it, with everything in it, afterwards.

#include <filesystem>
#include <vector>

#include <gtest/gtest.h>

namespace prov::testing {

class TemporaryDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // The test's directory; exists between SetUp and TearDown.
  const std::filesystem::path& sandbox() const { return sandbox_; }

 private:
  std::filesystem::path sandbox_;
};

// Creates a fresh directory named after `prefix`; aborts the test on failure.
std::filesystem::path makeTemporaryDirectory(const std::string& prefix);

// Every directory this process's TemporaryDirectoryTests created (for checks
// at the end of a test binary; other test processes may run beside it).
std::vector<std::filesystem::path> sandboxesCreated();

}  // namespace prov::testing
