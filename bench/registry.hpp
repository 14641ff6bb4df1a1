#pragma once

// The registry a benchmark driver pulls from: Debian's docker-registry on a
// free 127.0.0.1 port, under a work directory made anew.

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "testkit/real_registry.hpp"

namespace prov::bench {

// Empties `dir` and starts the registry under dir/registry; null (after a
// line on stderr) when it cannot.
// With `tls`, it serves https with a certificate of a test CA
// (RealRegistry::caFile).
inline std::unique_ptr<testing::RealRegistry> freshRegistry(const std::filesystem::path& dir, bool tls = false) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string error;
  testing::RealRegistry::Options options;
  options.tls = tls;
  auto registry = testing::RealRegistry::start(dir / "registry", options, error);
  if (!registry) std::fprintf(stderr, "error: %s\n", error.c_str());
  return registry;
}

}  // namespace prov::bench
