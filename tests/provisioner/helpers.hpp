#pragma once

// What the provisioner's test fixtures share: where a container lives on
// disk, and a TearDown that destroys what a test left.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "provisioner/provisioner.hpp"
#include "testkit/files.hpp"
#include "tests/support/await.hpp"
#include "tests/support/faulty_disk.hpp"

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

// A disk (actors/disk.hpp) that holds the first rename onto a path ending
// in `suffix` until release() (or its end): a write of an index
// (store/atomic_file.cpp) caught half way.
class HoldRenameOnto : public testing::FaultyDisk {
 public:
  explicit HoldRenameOnto(std::string suffix) : suffix_(std::move(suffix)) {}
  ~HoldRenameOnto() override { release(); }
  int before(actors::fs::DiskCall call, const char* path) override {
    const std::string_view to(path);
    if (call == actors::fs::DiskCall::Rename && to.ends_with(suffix_) && !held_.exchange(true)) {
      std::unique_lock lock(mutex_);
      reached_ = true;
      changed_.notify_all();
      changed_.wait(lock, [this] { return open_; });
    }
    return FaultyDisk::before(call, path);
  }
  bool waitReached() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, testing::kDefaultAwait, [this] { return reached_; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  const std::string suffix_;
  std::atomic<bool> held_{false};
  std::mutex mutex_;
  std::condition_variable changed_;
  bool reached_ = false, open_ = false;
};

// Destroys container `id`, whose image's last use the index file `index`
// says is over an hour old, with the write of its new last use held on the
// disk; quiesce(), asked right after the destroy as the command line asks
// it, must stay pending until the write is let through, and then the file
// has the new last use.
inline void expectQuiesceWaitsForTheLastUseWrite(Provisioner& provisioner, const std::string& id,
                                                 const std::filesystem::path& index) {
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  auto lastUseOnDisk = [&] {
    messages::StoredImages images;
    EXPECT_TRUE(images.ParseFromString(testing::readFile(index)));
    EXPECT_EQ(1, images.images_size()) << index;
    return images.images_size() == 1 ? images.images(0).last_used_at() : -1;
  };
  ASSERT_LT(lastUseOnDisk(), now - 3600);
  HoldRenameOnto disk("/" + index.parent_path().filename().string() + "/" + index.filename().string());
  AWAIT_ASSERT_EQ(true, provisioner.destroy(id));
  auto quiet = provisioner.quiesce();
  ASSERT_TRUE(disk.waitReached()) << "the destroy moved the image's last use";
  EXPECT_FALSE(quiet.waitFor(std::chrono::milliseconds(200))) << "READY while the index write was held";
  EXPECT_LT(lastUseOnDisk(), now - 3600);
  disk.release();
  AWAIT_READY(quiet);
  EXPECT_GE(lastUseOnDisk(), now) << "on disk once quiesce() is READY";
}

}  // namespace prov::provisioner::fixture
