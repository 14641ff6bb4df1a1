// store_crash_child STORE_DIR REGISTRY_URL REFERENCE: pulls REFERENCE (its
// docker.io stand-in is REGISTRY_URL) into a store at STORE_DIR and waits
// for it. The crash test kills this process with SIGKILL in the middle.

#include <cstdio>
#include <memory>

#include "actors/actors.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "store/image_store.hpp"

int main(int argc, char** argv) {
  using namespace prov;
  if (argc != 4) {
    std::fprintf(stderr, "usage: store_crash_child STORE_DIR REGISTRY_URL REFERENCE\n");
    return 2;
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
  return 0;
}
