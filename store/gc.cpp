#include "store/gc.hpp"

#include "actors/async.hpp"
#include "actors/fs.hpp"
#include "store/layer_disk.hpp"

namespace prov::store {

using actors::Future;

GarbageCollector::GarbageCollector(actors::Runtime& runtime, std::string storeDir)
    : runtime_(runtime), storeDir_(std::move(storeDir)) {}

Future<Nothing> GarbageCollector::collect(const Future<Nothing>& before, std::vector<std::string> paths) {
  actors::Runtime& runtime = runtime_;
  const std::string dir = storeDir_;
  Future<Nothing> marked = before.then([&runtime, dir, paths = std::move(paths)] {
    return actors::async(runtime, [dir, paths]() -> Try<Nothing> {
      auto moved = markForGc(dir, paths);
      if (moved.isError()) return moved.error();
      return Nothing{};
    });
  });
  auto ignore = [](const Future<Nothing>&) { return Nothing{}; };
  Future<Nothing> swept =
      marked.then([&runtime, dir] { return actors::async(runtime, [dir] { return sweepGc(dir); }); }).recover(ignore);
  idle_ = swept.then([previous = idle_] { return previous; }).recover(ignore);
  return marked;
}

Future<std::vector<std::string>> GarbageCollector::leftBehind(std::vector<std::string> paths) const {
  return actors::async(runtime_, [paths = std::move(paths)] {
    std::vector<std::string> left;
    for (const auto& path : paths) {
      if (actors::fs::exists(path)) left.push_back(path);
    }
    return left;
  });
}

}  // namespace prov::store
