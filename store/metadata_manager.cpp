#include "store/metadata_manager.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <sstream>
#include <utility>

#include "actors/async.hpp"
#include "actors/defer.hpp"
#include "actors/dispatch.hpp"
#include "actors/fs.hpp"
#include "actors/log.hpp"
#include "actors/process.hpp"
#include "store/atomic_file.hpp"
#include "store/paths.hpp"

namespace prov::store {

using actors::Error;
using actors::ErrorKind;
using actors::Future;
using actors::Nothing;
using actors::Promise;
using actors::Try;

namespace {

struct Loaded {
  messages::StoredImages images;
  std::string warning;
};

Try<Loaded> load(const std::string& path) {
  Loaded loaded;
  auto read = actors::fs::readFile(path);
  if (read.isError()) {
    if (read.error().kind == ErrorKind::NotFound) return loaded;
    return read.error().withContext("Failed to read the image index");
  }
  const std::string bytes = std::move(*read);
  if (bytes.empty()) {
    loaded.warning = "the image index '" + path + "' is empty; starting with no images";
  } else if (!loaded.images.ParseFromString(bytes)) {
    loaded.images.Clear();
    loaded.warning = "the image index '" + path + "' is truncated or corrupt; starting with no images";
  }
  return loaded;
}

}  // namespace

class MetadataManagerProcess : public actors::Process<MetadataManagerProcess> {
 public:
  MetadataManagerProcess(actors::Runtime& runtime, std::string storeDir)
      : actors::Process<MetadataManagerProcess>("metadata-manager"), runtime_(runtime),
        path_(paths::imagesFile(storeDir)) {}

  Future<std::vector<messages::StoredImage>> recover() {
    return actors::async(runtime_, [path = path_] { return load(path); })
        .then(actors::defer(self(), [this](const Loaded& loaded) {
          images_.clear();
          for (const auto& image : loaded.images.images()) images_[image.key()] = image;
          warning_ = loaded.warning;
          return list();
        }));
  }

  Future<messages::StoredImage> put(const messages::StoredImage& image) {
    images_[image.key()] = image;
    return persist().then([image] { return image; });
  }

  Future<Nothing> remove(const std::vector<std::string>& keys) {
    for (const auto& key : keys) images_.erase(key);
    return persist();
  }

  std::optional<messages::StoredImage> get(const std::string& key) {
    auto it = images_.find(key);
    if (it == images_.end()) return std::nullopt;
    return it->second;
  }

  std::vector<messages::StoredImage> list() {
    std::vector<messages::StoredImage> all;
    for (const auto& [key, image] : images_) all.push_back(image);
    return all;
  }

  std::string recoveryWarning() { return warning_; }

  // READY once no write runs and none waits: what was put before is on
  // disk (or failed). ProcessOwner waits for it before the index's owner,
  // and the work dir's lock, go.
  Future<Nothing> quiesce() {
    if (!writing_ && next_.empty()) return Nothing{};
    auto drained = std::make_shared<Promise<Nothing>>();
    drained_.push_back(drained);
    return drained->future();
  }

 private:
  // Joins the next write; starts it unless one is running.
  Future<Nothing> persist() {
    auto waiter = std::make_shared<Promise<Nothing>>();
    next_.push_back(waiter);
    if (!writing_) write();
    return waiter->future();
  }

  void write() {
    writing_ = true;
    std::vector<std::shared_ptr<Promise<Nothing>>> waiters = std::move(next_);
    next_.clear();
    messages::StoredImages all;
    for (const auto& [key, image] : images_) *all.add_images() = image;
    std::string bytes;
    all.SerializeToString(&bytes);
    actors::async(runtime_, [path = path_, bytes = std::move(bytes)] {
      return writeFileAtomically(path, bytes);
    }).onAny(actors::defer(self(), [this, waiters](const Future<Nothing>& written) {
      for (const auto& waiter : waiters) {
        written.isReady() ? waiter->set(Nothing{}) : waiter->fail(written.failure());
      }
      writing_ = false;
      if (!next_.empty()) {
        write();
        return;
      }
      for (const auto& drained : std::exchange(drained_, {})) drained->set(Nothing{});
    }));
  }

  actors::Runtime& runtime_;
  const std::string path_;
  std::map<std::string, messages::StoredImage> images_;
  std::string warning_;
  bool writing_ = false;
  std::vector<std::shared_ptr<Promise<Nothing>>> next_;
  std::vector<std::shared_ptr<Promise<Nothing>>> drained_;  // quiesce() callers
};

void touchLastUse(messages::StoredImage& image, MetadataManager& index) {
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  if (now - image.last_used_at() < kLastUseResolution) return;
  image.set_last_used_at(now);
  index.put(image).onFailed([key = image.key()](const actors::Error& error) {
    actors::log(actors::LogLevel::Warn, "index.write_failed", {{"image", key}, {"error", error.message}});
  });
}

MetadataManager::MetadataManager(actors::Runtime& runtime, std::string storeDir)
    : process_(runtime, std::make_unique<MetadataManagerProcess>(runtime, std::move(storeDir))) {}

MetadataManager::~MetadataManager() = default;

Future<std::vector<messages::StoredImage>> MetadataManager::recover() {
  return process_.dispatch(&MetadataManagerProcess::recover);
}

Future<messages::StoredImage> MetadataManager::put(const messages::StoredImage& image) {
  return process_.dispatch(&MetadataManagerProcess::put, image);
}

Future<Nothing> MetadataManager::remove(const std::vector<std::string>& keys) {
  return process_.dispatch(&MetadataManagerProcess::remove, keys);
}

Future<std::optional<messages::StoredImage>> MetadataManager::get(const std::string& key) {
  return process_.dispatch(&MetadataManagerProcess::get, key);
}

Future<std::vector<messages::StoredImage>> MetadataManager::list() {
  return process_.dispatch(&MetadataManagerProcess::list);
}

Future<std::string> MetadataManager::recoveryWarning() {
  return process_.dispatch(&MetadataManagerProcess::recoveryWarning);
}

Future<Nothing> MetadataManager::quiesce() { return process_.dispatch(&MetadataManagerProcess::quiesce); }

}  // namespace prov::store
