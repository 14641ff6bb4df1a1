// The embedding smoke test (scripts/install_test.sh builds it against an
// installed provisioner): a Runtime, a Provisioner on a fresh work dir
// serving Docker images, recover() with no known containers, awaited. Prints
// the version and "recovered"; exit 0 when all of that worked.

#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <system_error>
#include <utility>

#include "actors/runtime.hpp"
#include "provisioner/provisioner.hpp"
#include "provisioner/version.hpp"

namespace {

int run(const std::string& workDir) {
  prov::actors::Runtime runtime;
  prov::provisioner::Flags flags;
  flags.workDir = workDir;
  flags.imageProviders = "docker";
  auto created = prov::provisioner::Provisioner::create(flags, runtime);
  if (created.isError()) {
    std::cerr << "error: Provisioner::create: " << created.error().message << "\n";
    return 1;
  }
  auto provisioner = std::move(created.get());
  auto recovered = provisioner->recover({});
  if (!recovered.waitFor(std::chrono::minutes(1)) || !recovered.isReady()) {
    std::cerr << "error: recover: "
              << (recovered.isFailed() ? recovered.failure().message : std::string("did not complete")) << "\n";
    return 1;
  }
  std::cout << "provisioner " << prov::kVersion << "\n";
  std::cout << "recovered\n";
  return 0;
}

}  // namespace

int main() {
  std::string dir = (std::filesystem::temp_directory_path() / "provisioner-agent-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const int status = run(dir);  // the Provisioner and the Runtime are gone after this
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return status;
}
