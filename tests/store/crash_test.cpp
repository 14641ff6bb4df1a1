// kill -9 of a process in the middle of a layer's extraction, then
// recover(): the store is consistent (no partial layer, staging empty, no
// image recorded) and the next get pulls only what is missing.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testkit/files.hpp"
#include "tests/store/store_fixture.hpp"

#ifndef PROV_STORE_CRASH_CHILD
#error "PROV_STORE_CRASH_CHILD must name the crash child executable"
#endif

namespace prov::store {
namespace {

namespace fs = std::filesystem;
using testing::TarEntry;

std::size_t filesUnder(const fs::path& dir) {
  std::error_code ec;
  std::size_t n = 0;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) ++n;
  return n;
}

TEST_F(ImageStoreTest, KillNineInTheMiddleOfAnExtractionThenRecover) {
  std::vector<TarEntry> many;
  for (int d = 0; d < 50; ++d) {
    for (int f = 0; f < 800; ++f) {
      many.push_back(TarEntry::file("d" + std::to_string(d) + "/f" + std::to_string(f), std::string(512, 'x')));
    }
  }
  auto built = publish("test/crash", "latest", {{TarEntry::file("base", "base")}, many});
  store_.reset();  // the child owns the directory now

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execl(PROV_STORE_CRASH_CHILD, PROV_STORE_CRASH_CHILD, storeDir_.c_str(), registry_.url().c_str(), "test/crash",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Kill it once the base layer is committed and the big one partly
  // extracted (layers extract concurrently: on a loaded machine the base
  // may commit after the big one started).
  bool midway = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!midway && std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    const bool baseCommitted = fs::exists(storeDir_ / "layers", ec) && !fs::is_empty(storeDir_ / "layers", ec);
    for (const auto& staged : fs::directory_iterator(storeDir_ / "staging", ec)) {
      if (baseCommitted && filesUnder(staged.path()) > 2000) midway = true;
    }
    if (!midway) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(child, ::waitpid(child, &status, 0));
  ASSERT_TRUE(midway) << "the child never got into the big layer";
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child finished before it was killed";
  ASSERT_FALSE(stagingEntries().empty()) << "the kill was not in the middle of an extraction";

  restartStore();
  expectStagingEmpty();
  AWAIT_ASSERT_EQ(0u, store_->images().then([](const std::vector<messages::StoredImage>& v) { return v.size(); }));
  // Every layer in layers/ is complete: only the base one can be there.
  for (const auto& layer : fs::directory_iterator(storeDir_ / "layers")) {
    EXPECT_EQ("base", testing::readFile(layer.path() / "rootfs/base")) << layer.path();
  }
  const std::size_t baseFetches = registry_.count(built.layerDigests[0]);
  auto info = store_->get(dockerImage("test/crash"));
  AWAIT_READY_FOR(info, std::chrono::seconds(180));  // 40,000 files; slow under TSan
  EXPECT_EQ(50u * 800u + 50u, filesUnder(info->layers[1]));
  EXPECT_EQ(baseFetches, registry_.count(built.layerDigests[0])) << "the committed base layer is reused";
}

}  // namespace
}  // namespace prov::store
