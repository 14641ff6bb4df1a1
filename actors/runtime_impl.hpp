#pragma once

// Internal to actors/: the parts of Runtime that need Boost.Asio. Nothing
// outside actors/*.cpp includes this.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "actors/clock.hpp"
#include "actors/runtime.hpp"

namespace prov::actors {

namespace detail {
struct ProcessContext;
}

// The blocking pool: up to `limit` threads, each started when a task finds
// no idle one. A command that never blocks starts none; one that lists a
// store starts one or two, not all of them (issue #18: thread start and join
// were a measurable part of a 10 ms command). With a `keepAlive`, a thread
// idle that long ends (the waiting pool: dozens of threads for a burst of
// unmounts need not stay for the life of an agent).
class BlockingPool {
 public:
  explicit BlockingPool(std::size_t limit, std::chrono::milliseconds keepAlive = std::chrono::milliseconds::zero())
      : limit_(limit), keepAlive_(keepAlive) {}
  ~BlockingPool() { join(); }
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // False, with `task` dropped unrun, only when no thread is there to run
  // it and none could be started (pthread_create failed: a pids limit).
  bool post(std::function<void()> task);
  // Runs every task posted, those posted meanwhile too, then joins the
  // threads. post() after join() starts the pool again.
  void join();
  std::size_t threads();  // running now, idle or busy

 private:
  void run();

  const std::size_t limit_;
  const std::chrono::milliseconds keepAlive_;  // zero: threads stay until join()
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  std::vector<std::thread> retired_;  // ended by keepAlive_: joined by the next post() or join()
  std::size_t idle_ = 0;
  std::size_t live_ = 0;  // threads started whose run() has not returned
  bool joining_ = false;
};

struct Runtime::Impl {
  explicit Impl(Options options);

  // Counts events posted through the runtime, for settle().
  void eventPosted();
  void eventDone();
  void settle();

  Options options;
  boost::asio::io_context io;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard;
  // Starts workers until `count` run (under workersMutex).
  void startWorkers(std::size_t count);
  mutable std::mutex workersMutex;
  std::vector<std::thread> workers;     // under workersMutex
  std::atomic<bool> allWorkers{false};  // every worker started, or shutdown() began
  std::mutex offloadMutex;
  struct Offloaded {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Offloaded> offloaded;  // Runtime::offload's threads: reaped by the next offload, joined by shutdown()
  BlockingPool blocking;
  BlockingPool waiting;
  std::unique_ptr<Clock> clock;  // destroyed before `io`

  std::mutex submitMutex;  // orders submitBlocking against the end of accepting
  std::atomic<bool> accepting{true};
  std::atomic<bool> stopped{false};
  std::atomic<std::uint64_t> nextProcessNumber{0};

  std::mutex pendingMutex;
  std::condition_variable pendingCv;
  std::int64_t pending = 0;

  std::mutex processesMutex;
  std::unordered_map<detail::ProcessContext*, std::weak_ptr<detail::ProcessContext>> processes;
};

namespace detail {
// The runtime whose worker thread this is, or null.
Runtime::Impl* currentWorkerRuntime();
}  // namespace detail

}  // namespace prov::actors
