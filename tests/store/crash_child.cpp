// store_crash_child STORE_DIR REGISTRY_URL REFERENCE [CRASH_AT]: pulls
// REFERENCE (its docker.io stand-in is REGISTRY_URL) into a store at
// STORE_DIR and waits for it. The crash test kills this process with
// SIGKILL in the middle. With CRASH_AT a number N, the process kills
// itself at its N-th disk call (tests/support/faulty_disk.hpp); with
// CRASH_AT "count", it prints "disk_calls C" after the pull: how many
// disk calls the recover and the pull made.

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "actors/actors.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "store/image_store.hpp"
#include "tests/support/faulty_disk.hpp"

int main(int argc, char** argv) {
  using namespace prov;
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: store_crash_child STORE_DIR REGISTRY_URL REFERENCE [CRASH_AT|count]\n");
    return 2;
  }
  std::optional<prov::testing::FaultyDisk> disk;
  const bool count = argc == 5 && std::string(argv[4]) == "count";
  if (argc == 5) {
    disk.emplace();
    if (!count) disk->crashAt(std::nullopt, std::stol(argv[4]));
  }
  actors::Runtime runtime;
  fetcher::RegistryOptions options;
  options.hubUrl = argv[2];
  auto puller = fetcher::RegistryPuller::create(runtime, options, 4);
  if (puller.isError()) return 3;
  std::shared_ptr<fetcher::Puller> shared(std::move(*puller));
  store::ImageStoreOptions storeOptions;
  storeOptions.storeDir = argv[1];
  auto store = store::ImageStore::create(runtime, storeOptions, [shared](const messages::Image&) { return shared; });
  if (store.isError()) return 4;
  auto recovered = (*store)->recover();
  recovered.waitFor(std::chrono::seconds(30));
  messages::Image image;
  image.set_type(messages::Image::DOCKER);
  *image.mutable_reference() = *fetcher::parseImageReference(argv[3]);
  auto got = (*store)->get(image);
  got.waitFor(std::chrono::seconds(120));
  if (!got.isReady()) {
    std::fprintf(stderr, "%s\n", got.isFailed() ? got.failure().message.c_str() : "not ready");
    return 1;
  }
  if (count) std::printf("disk_calls %ld\n", disk->calls());
  return 0;
}
