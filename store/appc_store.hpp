#pragma once

// The AppC image store (Mesos appc/store.cpp, with its gaps closed): the
// "appc" provider's Store (store/store.hpp). An actor; every call may come
// from any thread. Its directory's layout is drawn in store/paths.hpp.
//
// get(image): the image's rootfs directories, its dependencies' first (each
//   once, depth first, in the order the manifests list them), and its own
//   manifest's runtime config (exec, environment, working directory, user).
//   ImageInfo::configPath is the image's manifest file; the index entry's
//   StoredImage::appc holds its id and the ids it is made of.
//   - The image is looked up by id (when given) or by name and labels (with
//     `version`, `os` and `arch` defaulted, so equal queries are one key).
//     `cached = false` fetches it again (dependencies given by id are reused).
//   - Fetching: simple discovery (fetcher/appc.hpp), then the ACI is read
//     once: its uncompressed bytes hashed (the image id is "sha512-" + hex),
//     its rootfs/ extracted under the Docker layers' rules into staging, its
//     manifest validated, and the name checked against the one asked for. A
//     dependency given by id must hash to it (DigestMismatch otherwise).
//     Only then is it renamed into images/<id>; on any failure nothing is
//     stored.
//   - Concurrent gets of one image share one fetch; discarding every caller
//     stops it. Dependencies are fetched in parallel; a cycle (by name or id)
//     is InvalidArgument naming the chain.
// recover(): empties staging/ and gc/, reads images/*/manifest (an image
//   whose manifest is unreadable is removed), loads the index and drops
//   entries whose images are gone.
// prune(excluded, activePaths): as the Docker store: forgets every entry but
//   `excluded` and those whose every rootfs a container uses, and removes
//   every image no remaining entry, no active path and no running get uses.

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "actors/future.hpp"
#include "fetcher/appc.hpp"
#include "messages/image.pb.h"
#include "store/extractor.hpp"
#include "store/process_store.hpp"
#include "store/tar_apply.hpp"

namespace prov::actors {
class Runtime;
}

namespace prov::store {

struct AppcStoreOptions {
  std::string storeDir;  // <work_dir>/store/appc
  ExtractLimits limits;
  bool syncImages = true;  // syncfs before an image becomes visible
  // Every ACI's download and extraction goes through it; give the stores
  // one to share for one bound on the node. Null: the store makes its own.
  std::shared_ptr<Extractor> extractor;
};

class AppcStoreProcess;
extern template class ProcessStore<AppcStoreProcess>;  // in appc_store.cpp

class AppcStore final : public ProcessStore<AppcStoreProcess> {
 public:
  // Makes the store's directories; IO error when it cannot.
  static Try<std::unique_ptr<AppcStore>> create(actors::Runtime& runtime, AppcStoreOptions options,
                                                std::shared_ptr<fetcher::AppcFetcher> fetcher);
  ~AppcStore() override;

  Try<std::string> keyOf(const messages::Image& image) const override;

 private:
  AppcStore(std::unique_ptr<AppcStoreProcess> process, actors::Runtime& runtime);
};

}  // namespace prov::store
