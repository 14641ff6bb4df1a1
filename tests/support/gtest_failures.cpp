// Routes the testkit helpers' failures (testkit/files.hpp: a file that could
// not be written, read, made) into GoogleTest: each fails the running test,
// as ADD_FAILURE() did when the helpers lived in tests/support. Built as an
// object library linked into every test binary, so the linker never drops
// this initializer.

#include <gtest/gtest.h>

#include <string>

#include "testkit/files.hpp"

namespace {

void addFailure(const std::string& message) { ADD_FAILURE() << message; }

[[maybe_unused]] const bool installed = (prov::testing::setFailureReporter(&addFailure), true);

}  // namespace
