#pragma once

// ProcessOwner<P>: the one way a class owns an actor (libprocess's
// asynchronous pimpl, Mesos's facades). The facade keeps a ProcessOwner as a
// member and turns each public call into one dispatch:
//
//   class Store {
//    public:
//     Future<Nothing> recover() { return process_.dispatch(&StoreProcess::recover); }
//    private:
//     actors::ProcessOwner<StoreProcess> process_;
//   };
//
// The constructor spawns the process. The destructor, first, when P has a
// `Future<Nothing> quiesce()`, dispatches it and waits (up to five minutes)
// for the work P runs in the background to end (a gc sweep deleting in a
// directory the owner's owner may remove next); then it terminates the
// process and waits for finalize(). On a runtime worker thread both waits run
// other events meanwhile, so a facade destroyed there cannot starve the pool.
//
// P may be an incomplete type where the facade is declared: define the
// facade's constructor and destructor where P is complete.

#include <chrono>
#include <memory>
#include <utility>

#include "actors/dispatch.hpp"
#include "actors/process.hpp"

namespace prov::actors {

// A process with background work to wait for (see above).
// clang-format off
template <typename P>
concept Quiescent = requires(P& p) { p.quiesce(); };
// clang-format on

template <typename P>
class ProcessOwner {
 public:
  ProcessOwner(Runtime& runtime, std::unique_ptr<P> process) : process_(std::move(process)) {
    pid_ = spawn(runtime, *process_);
  }

  ~ProcessOwner() {
    if constexpr (Quiescent<P>) {
      detail::waitFor(pid_.context(), actors::dispatch(pid_, &P::quiesce), kQuiesceTimeout);
    }
    terminate(pid_);
    wait(pid_);
  }

  ProcessOwner(const ProcessOwner&) = delete;
  ProcessOwner& operator=(const ProcessOwner&) = delete;

  const PID<P>& pid() const { return pid_; }

  // actors::dispatch(pid(), method, args...).
  template <typename M, typename... A>
  auto dispatch(M method, A&&... args) const {
    return actors::dispatch(pid_, method, std::forward<A>(args)...);
  }

 private:
  static constexpr std::chrono::minutes kQuiesceTimeout{5};
  std::unique_ptr<P> process_;
  PID<P> pid_;
};

}  // namespace prov::actors
