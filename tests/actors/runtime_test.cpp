#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "actors/runtime_impl.hpp"  // the blocking pool's thread count
#include "tests/support/await.hpp"

namespace prov::actors {
namespace {

class Tally : public Process<Tally> {
 public:
  // No lock and no atomic: the strand serialises these.
  void add(int from) {
    ++count_;
    ++perSender_[from];
  }
  long count() const { return count_; }
  std::vector<long> perSender() const { return perSender_; }
  explicit Tally(int senders) : perSender_(senders, 0) {}

 private:
  long count_ = 0;
  std::vector<long> perSender_;
};

TEST(RuntimeTest, MillionDispatchesFromSeveralThreadsIntoEightProcesses) {
  constexpr int kProcesses = 8;
  constexpr int kSenders = 4;
  constexpr long kTotal = 1000000;
  constexpr long kPerSender = kTotal / kSenders;
  Runtime runtime;
  std::vector<std::unique_ptr<Tally>> tallies;
  std::vector<PID<Tally>> pids;
  for (int i = 0; i < kProcesses; ++i) {
    tallies.push_back(std::make_unique<Tally>(kSenders));
    pids.push_back(spawn(runtime, *tallies.back()));
  }
  std::vector<std::thread> senders;
  for (int s = 0; s < kSenders; ++s) {
    senders.emplace_back([&, s] {
      for (long i = 0; i < kPerSender; ++i) {
        // The futures are dropped: one-way dispatches.
        (void)dispatch(pids[i % kProcesses], &Tally::add, s);
      }
    });
  }
  for (auto& t : senders) t.join();

  long total = 0;
  for (int p = 0; p < kProcesses; ++p) {
    Future<long> count = dispatch(pids[p], &Tally::count);
    AWAIT_READY_FOR(count, std::chrono::seconds(300));
    EXPECT_EQ(kTotal / kProcesses, count.get()) << "process " << p;
    total += count.get();
    Future<std::vector<long>> per = dispatch(pids[p], &Tally::perSender);
    AWAIT_READY(per);
    for (int s = 0; s < kSenders; ++s) EXPECT_EQ(kPerSender / kProcesses, per.get()[s]);
  }
  EXPECT_EQ(kTotal, total);
  for (auto& pid : pids) terminate(pid);
  for (auto& pid : pids) wait(pid);
}

TEST(RuntimeTest, SettleWaitsForChainsOfEvents) {
  Runtime runtime;
  Tally tally(1);
  PID<Tally> pid = spawn(runtime, tally);
  // Each event posts the next one, 1,000 deep.
  std::function<void(int)> chain = [&](int n) {
    if (n == 0) return;
    (void)dispatch(pid, [&, n] {
      tally.add(0);
      chain(n - 1);
    });
  };
  chain(1000);
  runtime.settle();
  EXPECT_EQ(1000, tally.count());
  terminate(pid);
  wait(pid);
}

TEST(RuntimeTest, ShutdownTerminatesLiveProcessesAndDropsTimers) {
  std::atomic<bool> finalized{false};
  struct Lingering : Process<Lingering> {
    explicit Lingering(std::atomic<bool>* f) : flag(f) {}
    void finalize() override { *flag = true; }
    std::atomic<bool>* flag;
  } lingering(&finalized);
  Future<Nothing> timer;
  Future<int> blocked;
  {
    Runtime runtime(Runtime::Options{.workerThreads = 2, .blockingThreads = 2});
    PID<Lingering> pid = spawn(runtime, lingering);
    timer = runtime.clock().sleep(std::chrono::hours(1));
    blocked = async(runtime, [] { return 3; });
    // The runtime goes away with the process still running and a timer set.
  }
  EXPECT_TRUE(finalized);
  EXPECT_TRUE(timer.isAbandoned());  // the timer will never fire
  EXPECT_TRUE(blocked.isReady());    // queued blocking work was drained
}

TEST(RuntimeTest, ShutdownIsIdempotent) {
  Runtime runtime;
  runtime.shutdown();
  runtime.shutdown();
  EXPECT_FALSE(runtime.accepting());
}

TEST(RuntimeTest, ThreadCounts) {
  Runtime runtime(Runtime::Options{.workerThreads = 3, .blockingThreads = 5});
  EXPECT_EQ(3u, runtime.workerThreads());
  EXPECT_EQ(5u, runtime.blockingThreads());
  EXPECT_FALSE(runtime.onWorkerThread());
  Tally tally(1);
  PID<Tally> pid = spawn(runtime, tally);
  AWAIT_EXPECT_EQ(true, dispatch(pid, [&] { return runtime.onWorkerThread(); }));
  terminate(pid);
  wait(pid);
}

// A turnstile the blocking tasks below wait at, so that they are all running at
// once when the threads are counted.
struct Turnstile {
  std::mutex mutex;
  std::condition_variable changed;
  int arrived = 0;
  bool open = false;

  void arriveAndWait() {
    std::unique_lock lock(mutex);
    ++arrived;
    changed.notify_all();
    changed.wait(lock, [this] { return open; });
  }
  bool waitForArrivals(int n) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(30), [&] { return arrived >= n; });
  }
  void release() {
    std::lock_guard lock(mutex);
    open = true;
    changed.notify_all();
  }
};

TEST(RuntimeTest, BlockingThreadsStartWhenNeededAndNeverPastTheLimit) {
  Runtime runtime(Runtime::Options{.workerThreads = 2, .blockingThreads = 3});
  auto threads = [&runtime] { return runtime.impl().blocking.threads(); };
  // A runtime that blocks on nothing starts no blocking thread.
  EXPECT_EQ(0u, threads());

  AWAIT_EXPECT_EQ(1, async(runtime, [] { return 1; }));
  EXPECT_EQ(1u, threads());  // one task, one thread

  // Five tasks that all wait at once: three run, on three threads, and the
  // other two wait for a thread instead of starting a fourth and a fifth.
  Turnstile gate;
  std::atomic<int> finished{0};
  std::vector<Future<int>> tasks;
  for (int i = 0; i < 5; ++i) {
    tasks.push_back(async(runtime, [&gate, &finished, i] {
      gate.arriveAndWait();
      ++finished;
      return i;
    }));
  }
  ASSERT_TRUE(gate.waitForArrivals(3));
  EXPECT_EQ(3u, threads());
  {
    std::lock_guard lock(gate.mutex);
    EXPECT_EQ(3, gate.arrived);
  }
  gate.release();
  for (int i = 0; i < 5; ++i) AWAIT_EXPECT_EQ(i, tasks[i]);
  EXPECT_EQ(5, finished.load());
  EXPECT_EQ(3u, threads());

  runtime.shutdown();
  EXPECT_EQ(0u, threads());
}

TEST(RuntimeTest, HeldBackWorkersStartAtStartAllWorkersOnce) {
  Runtime all(Runtime::Options{.workerThreads = 3});
  EXPECT_EQ(3u, all.startedWorkers());  // by default every worker starts at once

  Turnstile gate;  // outlives the runtime's threads
  Runtime runtime(Runtime::Options{.workerThreads = 3, .startedWorkerThreads = 1});
  // Opened on every way out, so that a failure below ends the test instead
  // of leaving workers at the gate for the runtime's shutdown to wait on.
  struct Opener {
    Turnstile& gate;
    ~Opener() { gate.release(); }
  } opener{gate};
  EXPECT_EQ(3u, runtime.workerThreads());
  EXPECT_EQ(1u, runtime.startedWorkers());
  // The one worker runs handlers.
  Tally tally(1);
  PID<Tally> pid = spawn(runtime, tally);
  AWAIT_EXPECT_EQ(true, dispatch(pid, [&] { return runtime.onWorkerThread(); }));

  runtime.startAllWorkers();
  EXPECT_EQ(3u, runtime.startedWorkers());
  // Three handlers at once, each on a worker of its own: they all arrive
  // before any leaves.
  for (int i = 0; i < 3; ++i) {
    boost::asio::post(runtime.ioContext(), [&gate] { gate.arriveAndWait(); });
  }
  ASSERT_TRUE(gate.waitForArrivals(3));
  gate.release();
  runtime.startAllWorkers();  // once only
  EXPECT_EQ(3u, runtime.startedWorkers());

  terminate(pid);
  wait(pid);
  runtime.shutdown();
  EXPECT_EQ(0u, runtime.startedWorkers());
}

TEST(RuntimeTest, NoWorkerStartsOnceShutDown) {
  Runtime runtime(Runtime::Options{.workerThreads = 2, .startedWorkerThreads = 1});
  EXPECT_EQ(1u, runtime.startedWorkers());
  runtime.shutdown();
  runtime.startAllWorkers();
  EXPECT_EQ(0u, runtime.startedWorkers());
}

// A blocking pool of one, held: waiting work still runs, four at once, each
// on a thread of the waiting pool.
TEST(RuntimeTest, WaitingWorkOverlapsPastAFullBlockingPool) {
  Turnstile held, gate;  // outlive the runtime's threads
  Runtime runtime(Runtime::Options{.workerThreads = 1, .blockingThreads = 1, .waitingThreads = 4});
  struct ReleaseAtExit {
    Turnstile& a;
    Turnstile& b;
    ~ReleaseAtExit() {
      a.release();
      b.release();
    }
  } releaseAtExit{held, gate};  // before the runtime's shutdown, however the test ends
  EXPECT_EQ(4u, runtime.waitingThreads());
  Future<int> holder = async(runtime, [&held] {
    held.arriveAndWait();
    return 0;
  });
  ASSERT_TRUE(held.waitForArrivals(1));

  std::vector<Future<int>> waits;
  for (int i = 0; i < 4; ++i) {
    waits.push_back(asyncWaiting(runtime, [&gate, &runtime, i] {
      gate.arriveAndWait();
      return runtime.onRuntimeThread() ? i : -1;
    }));
  }
  ASSERT_TRUE(gate.waitForArrivals(4));  // all four at once: none waits for the held thread
  EXPECT_EQ(4u, runtime.impl().waiting.threads());
  EXPECT_EQ(1u, runtime.impl().blocking.threads());
  gate.release();
  for (int i = 0; i < 4; ++i) AWAIT_EXPECT_EQ(i, waits[i]);
  held.release();
  AWAIT_EXPECT_EQ(0, holder);
}

TEST(RuntimeTest, WaitingThreadsEndOnceIdleForTheirKeepAlive) {
  Runtime runtime(Runtime::Options{.workerThreads = 1,
                                   .blockingThreads = 1,
                                   .waitingThreads = 2,
                                   .waitingKeepAlive = std::chrono::milliseconds(20)});
  auto threads = [&runtime] { return runtime.impl().waiting.threads(); };
  AWAIT_EXPECT_EQ(1, asyncWaiting(runtime, [] { return 1; }));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (threads() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polls a condition, with a deadline
  }
  EXPECT_EQ(0u, threads());
  // The pool starts a thread again (and joins the one that ended).
  AWAIT_EXPECT_EQ(2, asyncWaiting(runtime, [] { return 2; }));
  runtime.shutdown();
  EXPECT_EQ(0u, threads());
}

TEST(RuntimeTest, WaitingWorkIsRefusedOnceShutDown) {
  Runtime runtime(Runtime::Options{.workerThreads = 1});
  runtime.shutdown();
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, asyncWaiting(runtime, [] { return 1; }));
}

}  // namespace
}  // namespace prov::actors
