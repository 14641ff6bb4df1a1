#pragma once

// The facade every backend uses: owns a process P (actors::ProcessOwner) and
// turns each call into one dispatch. P provides provision() and destroy()
// with the signatures of Backend.

#include <memory>
#include <string>
#include <utility>

#include "actors/process_owner.hpp"
#include "backend/backend.hpp"

namespace prov::backend {

template <typename P>
class ProcessBackend final : public Backend {
 public:
  template <typename... A>
  ProcessBackend(actors::Runtime& runtime, std::string name, A&&... args)
      : name_(std::move(name)), process_(runtime, std::make_unique<P>(std::forward<A>(args)...)) {}

  std::string name() const override { return name_; }

  Future<RootfsInfo> provision(const std::vector<std::string>& layers, const std::string& rootfs,
                               const std::string& backendDir) override {
    return process_.dispatch(&P::provision, layers, rootfs, backendDir);
  }

  Future<bool> destroy(const std::string& rootfs, const std::string& backendDir) override {
    return process_.dispatch(&P::destroy, rootfs, backendDir);
  }

 private:
  std::string name_;
  actors::ProcessOwner<P> process_;
};

}  // namespace prov::backend
