// bench_pull's run of this project's store (see pull_ours.hpp): a cold pull
// of one image through RegistryPuller and ImageStore, with the store's
// default options (layers synced to disk before they become visible).
// PROV_BENCH_NO_SYNC=1 in the environment turns the sync off, to show what
// durability costs (the peers do not sync their unpacked trees).

#include "bench/pull_ours.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "actors/actors.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/reference.hpp"
#include "store/image_store.hpp"

namespace prov::bench {

int runOursOnce(const OursArgs& args) {
  auto fail = [](const std::string& message) {
    std::fprintf(stderr, "ours: %s\n", message.c_str());
    return 1;
  };
  actors::Runtime runtime;
  auto puller = fetcher::RegistryPuller::create(runtime, fetcher::RegistryOptions{});
  if (puller.isError()) return fail(puller.error().message);
  std::shared_ptr<fetcher::Puller> shared(std::move(*puller));
  store::ImageStoreOptions options;
  options.storeDir = args.storeDir;
  if (std::getenv("PROV_BENCH_NO_SYNC")) options.syncLayers = false;
  auto store = store::ImageStore::create(runtime, options, [shared](const messages::Image&) { return shared; });
  if (store.isError()) return fail(store.error().message);
  auto recovered = (*store)->recover();
  if (!recovered.waitFor(std::chrono::minutes(1)) || !recovered.isReady()) {
    return fail(recovered.isFailed() ? recovered.failure().message : "Failed to recover the store");
  }
  auto reference = fetcher::parseImageReference(args.reference);
  if (reference.isError()) return fail(reference.error().message);
  messages::Image image;
  image.set_type(messages::Image::DOCKER);
  *image.mutable_reference() = *reference;
  auto pulled = (*store)->get(image);
  if (!pulled.waitFor(std::chrono::minutes(30)) || !pulled.isReady()) {
    return fail(pulled.isFailed() ? pulled.failure().message : "Failed to pull '" + args.reference + "': timed out");
  }
  return 0;
}

}  // namespace prov::bench
