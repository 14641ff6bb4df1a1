#pragma once

// The facade every backend uses: owns a process P, spawns it on
// construction, terminates and waits for it on destruction, and turns each
// call into one dispatch. P provides provision() and destroy() with the
// signatures of Backend.

#include <memory>
#include <string>
#include <utility>

#include "actors/dispatch.hpp"
#include "backend/backend.hpp"

namespace prov::backend {

template <typename P>
class ProcessBackend final : public Backend {
 public:
  template <typename... A>
  ProcessBackend(actors::Runtime& runtime, std::string name, A&&... args)
      : name_(std::move(name)), process_(std::make_unique<P>(std::forward<A>(args)...)) {
    pid_ = actors::spawn(runtime, *process_);
  }

  ~ProcessBackend() override {
    actors::terminate(pid_);
    actors::wait(pid_);
  }

  std::string name() const override { return name_; }

  Future<ProvisionInfo> provision(const std::vector<std::string>& layers,
                                  const std::string& rootfs,
                                  const std::string& backendDir) override {
    return actors::dispatch(pid_, &P::provision, layers, rootfs, backendDir);
  }

  Future<bool> destroy(const std::string& rootfs, const std::string& backendDir) override {
    return actors::dispatch(pid_, &P::destroy, rootfs, backendDir);
  }

 private:
  std::string name_;
  std::unique_ptr<P> process_;
  actors::PID<P> pid_;
};

}  // namespace prov::backend
