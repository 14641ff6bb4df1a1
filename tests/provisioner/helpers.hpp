#pragma once

// What the provisioner's test fixtures share: where a container lives on
// disk, and a TearDown that destroys what a test left.

#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "provisioner/provisioner.hpp"
#include "tests/support/await.hpp"

namespace prov::provisioner::fixture {

// <work_dir>/provisioner/containers/a/containers/b for "a/b".
inline std::filesystem::path containerDir(const std::filesystem::path& workDir, const std::string& id) {
  std::filesystem::path dir = workDir / "provisioner";
  std::stringstream parts(id);
  std::string part;
  while (std::getline(parts, part, '/')) dir = dir / "containers" / part;
  return dir;
}

// Parts over `workDir` with the copy backend alone and no store.
inline Provisioner::Parts copyOnlyParts(actors::Runtime& runtime, const std::filesystem::path& workDir) {
  Provisioner::Parts parts;
  parts.workDir = workDir.string();
  auto copy = backend::createBackend(runtime, backend::kCopy);
  EXPECT_TRUE(copy.isSome()) << copy.error().message;
  if (copy.isSome()) parts.backends[backend::kCopy] = std::move(*copy);
  parts.defaultBackend = backend::kCopy;
  return parts;
}

// A provisioner made of `parts`, recovered with `known` (into `out`; a
// failure fails the test).
inline void start(actors::Runtime& runtime, Provisioner::Parts parts, const std::set<std::string>& known,
                  std::unique_ptr<Provisioner>& out) {
  auto created = Provisioner::create(std::move(parts), runtime);
  ASSERT_TRUE(created.isSome()) << created.error().message;
  out = std::move(*created);
  AWAIT_READY(out->recover(known));
}

// Destroys every top-level container (nested ones go with their parents).
inline void destroyAll(Provisioner& provisioner) {
  auto containers = provisioner.containers();
  if (!containers.waitFor(std::chrono::seconds(15)) || !containers.isReady()) return;
  for (const auto& c : containers.get()) {
    if (c.id.find('/') == std::string::npos) provisioner.destroy(c.id).waitFor(std::chrono::seconds(15));
  }
}

}  // namespace prov::provisioner::fixture
