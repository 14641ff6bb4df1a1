// The copy backend: applies the layers in order into a fresh directory
// (copy_tree.hpp), copying regular files in parallel on the blocking pool.

#include <atomic>
#include <memory>

#include "actors/async.hpp"
#include "actors/collect.hpp"
#include "actors/fs.hpp"
#include "actors/process.hpp"
#include "backend/backends.hpp"
#include "backend/copy_tree.hpp"
#include "backend/process_backend.hpp"

namespace prov::backend {

namespace {

using actors::async;
using actors::Runtime;

class CopyBackendProcess : public actors::Process<CopyBackendProcess> {
 public:
  explicit CopyBackendProcess(std::size_t parallelism)
      : Process("copy-provisioner-backend"), parallelism_(parallelism) {}

  Future<RootfsInfo> provision(const std::vector<std::string>& layers, const std::string& rootfs, const std::string&) {
    if (layers.empty()) {
      return Error(ErrorKind::InvalidArgument, "Failed to provision '" + rootfs + "': no filesystem layers were given");
    }
    Runtime* rt = &runtime();
    const std::size_t parallelism = parallelism_;
    auto reflink = std::make_shared<std::atomic<bool>>(true);
    Future<Nothing> applied = async(*rt, [rootfs] { return createMountPoint(rootfs); });
    for (const auto& layer : layers) {
      applied = applied.then(
          [rt, layer, rootfs, parallelism, reflink] { return applyLayer(*rt, layer, rootfs, parallelism, reflink); });
    }
    return applied.then([] { return RootfsInfo{}; })
        .repair([rt, rootfs](const Future<RootfsInfo>& failed) -> Future<RootfsInfo> {
          // Leave nothing behind, then report the original error.
          Error error = failed.failure();
          if (error.kind == ErrorKind::AlreadyExists) return error;
          return async(*rt, [rootfs] { return actors::fs::removeTree(rootfs); })
              .then([error](bool) -> Future<RootfsInfo> { return error; });
        });
  }

  Future<bool> destroy(const std::string& rootfs, const std::string&) {
    return async(runtime(), [rootfs] { return actors::fs::removeTree(rootfs); });
  }

 private:
  // One layer: shape the tree, copy the files in parallel, then settle the
  // directories. Waits for every copier before reporting a failure, so that
  // nothing is still writing when the caller cleans up.
  static Future<Nothing> applyLayer(Runtime& runtime, const std::string& layer, const std::string& rootfs,
                                    std::size_t parallelism, std::shared_ptr<std::atomic<bool>> reflink) {
    Runtime* rt = &runtime;
    return async(runtime, [layer, rootfs] { return copy::prepareLayer(layer, rootfs); })
        .then([rt, parallelism, reflink](const copy::LayerPlan& planned) {
          auto plan = std::make_shared<const copy::LayerPlan>(planned);
          auto next = std::make_shared<std::atomic<std::size_t>>(0);
          auto failed = std::make_shared<std::atomic<bool>>(false);
          std::vector<Future<Nothing>> copiers;
          const std::size_t count = std::min(parallelism, std::max<std::size_t>(plan->files.size(), 1));
          for (std::size_t i = 0; i < count; ++i) {
            copiers.push_back(async(*rt, [plan, next, failed, reflink]() -> Try<Nothing> {
              for (std::size_t job; !failed->load() && (job = next->fetch_add(1)) < plan->files.size();) {
                auto copied = copy::copyFile(plan->files[job], *reflink);
                if (copied.isError()) {
                  failed->store(true);
                  return copied;
                }
              }
              return Nothing{};
            }));
          }
          return actors::await(copiers).then([rt, plan](const std::vector<Future<Nothing>>& done) -> Future<Nothing> {
            for (const auto& copier : done) {
              if (!copier.isReady()) {
                return copier.isFailed() ? copier.failure() : Error(ErrorKind::Cancelled, "copy was cancelled");
              }
            }
            return async(*rt, [plan] { return copy::finishLayer(*plan); });
          });
        })
        .repair([layer](const Future<Nothing>& f) -> Future<Nothing> {
          return f.failure().withContext("Failed to apply layer '" + layer + "'");
        });
  }

  std::size_t parallelism_;
};

}  // namespace

Try<std::unique_ptr<Backend>> makeCopyBackend(actors::Runtime& runtime, std::size_t parallelism) {
  return std::unique_ptr<Backend>(std::make_unique<ProcessBackend<CopyBackendProcess>>(runtime, kCopy, parallelism));
}

}  // namespace prov::backend
