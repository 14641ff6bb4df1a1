#pragma once

// Runtime: the threads everything else runs on. There is no global runtime:
// the host creates one and passes it (by reference) to whatever needs it.
//
//   - an io_context run by `workerThreads` threads: process strands, network
//     I/O (ioContext() is what Beast sockets are built on) and timers;
//   - a separate blocking pool of up to `blockingThreads` threads for
//     file-system work (async() in async.hpp), so no strand is ever blocked
//     by it; each thread starts when a task finds no idle one;
//   - a waiting pool of up to `waitingThreads` threads for work that sleeps
//     in the kernel rather than runs (asyncWaiting() in async.hpp: an
//     unmount waiting for its file system's journal commit), so that many
//     such waits overlap without holding the blocking pool's threads; its
//     threads also start when needed, and end after `waitingKeepAlive` idle;
//   - a Clock (clock.hpp) that tests can pause and advance.
//
// shutdown() (also run by the destructor) stops accepting work (spawn makes
// already-terminated processes, async() and dispatch fail), terminates every
// live process and waits for their finalize(), cancels timers, drains the
// blocking and the waiting pools, waits for handlers already posted, then
// joins the threads.
// It is idempotent and must not be called from a runtime thread.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

namespace boost::asio {
class io_context;
}

namespace prov::actors {

class Clock;

class Runtime {
 public:
  struct Options {
    std::size_t workerThreads = 0;                      // 0: one per core
    std::size_t blockingThreads = 0;                    // 0: max(4, 2 * cores)
    std::size_t waitingThreads = 0;                     // 0: 32
    std::chrono::milliseconds waitingKeepAlive{10000};  // zero: never (at most a day)
    // How many of the workers start with the runtime (0: all); the rest
    // start at startAllWorkers(). A command that may move little data
    // starts with one: a second worker costs its start and the hand-offs
    // between the two, which a tiny pull feels (issue #18).
    std::size_t startedWorkerThreads = 0;
  };

  Runtime();
  explicit Runtime(Options options);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  void shutdown();

  // False once shutdown() has begun.
  bool accepting() const;

  Clock& clock();
  boost::asio::io_context& ioContext();

  std::size_t workerThreads() const;
  // Starts the workers Options::startedWorkerThreads held back, once; from
  // any thread. Whoever is about to move bulk data calls it (the HTTP
  // client, once the blob bodies it has begun add up to 8 MiB). A worker
  // the system refuses to start is reported on stderr, and the others
  // carry on. Nothing once shutdown() has begun.
  void startAllWorkers();
  // The workers running now (workerThreads() once all have started; none
  // after shutdown()).
  std::size_t startedWorkers() const;
  std::size_t blockingThreads() const;
  std::size_t waitingThreads() const;

  // True on one of this runtime's worker threads.
  bool onWorkerThread() const;
  // True on a worker thread or a thread of either pool of this runtime.
  bool onRuntimeThread() const;

  // Runs `work` on a thread of its own, outside the runtime, now; shutdown()
  // (and so the destructor) waits for it first, while the runtime still
  // runs. For work that blocks on the runtime and so must not run on one of
  // its threads: a facade destroyed from a callback hands its teardown here.
  void offload(std::function<void()> work);

  // Blocks until every event posted through this runtime (dispatches, timer
  // callbacks, blocking-pool tasks) has run, including the ones those events
  // post in turn. Not for runtime threads.
  void settle();

  // Internal plumbing for process.cpp, clock.cpp and async.hpp. Processes
  // share ownership of it: a process object (or a PID) may outlive the
  // Runtime, and its strand needs the io_context's memory until then.
  struct Impl;
  Impl& impl() { return *impl_; }
  const std::shared_ptr<Impl>& sharedImpl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
};

namespace detail {
// Runs `task` on the blocking (or the waiting) pool. False (and `task` is
// dropped unrun) once the runtime no longer accepts work.
enum class Pool { Blocking, Waiting };
bool submitBlocking(Runtime& runtime, std::function<void()> task, Pool pool = Pool::Blocking);
}  // namespace detail

}  // namespace prov::actors
