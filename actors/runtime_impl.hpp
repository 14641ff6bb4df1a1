#pragma once

// Internal to actors/: the parts of Runtime that need Boost.Asio. Nothing
// outside actors/*.cpp includes this.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "actors/clock.hpp"
#include "actors/runtime.hpp"

namespace prov::actors {

namespace detail {
struct ProcessContext;
}

struct Runtime::Impl {
  explicit Impl(Options options);

  // Counts events posted through the runtime, for settle().
  void eventPosted();
  void eventDone();
  void settle();

  Options options;
  boost::asio::io_context io;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard;
  std::vector<std::thread> workers;
  std::mutex offloadMutex;
  struct Offloaded {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Offloaded> offloaded;  // Runtime::offload's threads: reaped by the next offload, joined by shutdown()
  boost::asio::thread_pool blocking;
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
