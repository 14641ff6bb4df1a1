#pragma once

// RealRegistryTest: a TemporaryDirectoryTest with Debian's docker-registry
// started (plain HTTP) under sandbox()/registry in SetUp; a failure to
// start it fails the test.

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "testkit/real_registry.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::testing {

class RealRegistryTest : public TemporaryDirectoryTest {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    std::string error;
    registry_ = RealRegistry::start(sandbox() / "registry", {}, error);
    ASSERT_NE(nullptr, registry_) << error;
  }

  std::unique_ptr<RealRegistry> registry_;
};

}  // namespace prov::testing
