#pragma once

// The image index of a store, remembered across restarts: an actor holding
// StoredImage records by key, persisted to `<store>/images` (a StoredImages
// protobuf) with writeFileAtomically after every change. Writes never
// overlap: changes made while a write runs go out in the next one, and a
// change's future is READY once a write that includes it is durable.
//
// recover() loads the file. A missing, empty, truncated or unparsable file
// is not fatal (Mesos MetadataManagerRecoveryWithEmptyImagesFile): the index
// starts empty and recoveryWarning() says why; the layers stay on disk until
// a prune.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/error.hpp"
#include "actors/future.hpp"
#include "actors/process_owner.hpp"
#include "messages/image.pb.h"

namespace prov::actors {
class Runtime;
}

namespace prov::store {

// How finely an image's last use (StoredImage::last_used_at) is kept.
inline constexpr std::int64_t kLastUseResolution = 60;  // seconds

class MetadataManager;

// An image was in use now: when its last use moved by kLastUseResolution
// or more since the value `index` holds, the entry moves and is written
// (not waited for; a failure is logged, and the entry goes out again with
// the index's next write).
void touchLastUse(messages::StoredImage& image, MetadataManager& index);

class MetadataManagerProcess;

class MetadataManager {
 public:
  MetadataManager(actors::Runtime& runtime, std::string storeDir);
  ~MetadataManager();

  actors::Future<std::vector<messages::StoredImage>> recover();
  // Adds or replaces the record with image.key().
  actors::Future<messages::StoredImage> put(const messages::StoredImage& image);
  // Removes the records with these keys (unknown keys are ignored).
  actors::Future<actors::Nothing> remove(const std::vector<std::string>& keys);
  actors::Future<std::optional<messages::StoredImage>> get(const std::string& key);
  actors::Future<std::vector<messages::StoredImage>> list();
  // Why recover() started empty, if it had to ("" otherwise).
  actors::Future<std::string> recoveryWarning();
  // READY once the writes asked for before it are done (or failed).
  actors::Future<actors::Nothing> quiesce();

 private:
  actors::ProcessOwner<MetadataManagerProcess> process_;
};

}  // namespace prov::store
