#include <atomic>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "tests/support/await.hpp"

namespace prov::actors {
namespace {

class Recorder : public Process<Recorder> {
 public:
  Recorder() : Process("recorder") {}

  std::vector<std::string> events() const { return events_; }
  void note(const std::string& what) { events_.push_back(what); }
  bool onOwnStrand() const { return onStrand(); }

  std::atomic<bool> finalized{false};

 protected:
  void initialize() override { events_.push_back("initialize"); }
  void finalize() override {
    events_.push_back("finalize");
    finalized = true;
  }

 private:
  std::vector<std::string> events_;
};

TEST(ProcessTest, InitializeRunsFirstAndFinalizeLast) {
  Runtime runtime;
  Recorder recorder;
  PID<Recorder> pid = spawn(runtime, recorder);
  EXPECT_EQ(0u, pid.id().find("recorder("));
  dispatch(pid, &Recorder::note, std::string("a"));
  Future<std::vector<std::string>> events = dispatch(pid, &Recorder::events);
  AWAIT_EXPECT_EQ((std::vector<std::string>{"initialize", "a"}), events);
  terminate(pid);
  EXPECT_TRUE(wait(pid));
  EXPECT_TRUE(recorder.finalized);
  EXPECT_EQ((std::vector<std::string>{"initialize", "a", "finalize"}), recorder.events());
  AWAIT_READY(terminated(pid));
}

TEST(ProcessTest, EventsRunOnTheProcessStrand) {
  Runtime runtime;
  Recorder recorder;
  PID<Recorder> pid = spawn(runtime, recorder);
  EXPECT_FALSE(recorder.onOwnStrand());
  AWAIT_EXPECT_EQ(true, dispatch(pid, &Recorder::onOwnStrand));
  terminate(pid);
  wait(pid);
}

TEST(ProcessTest, DispatchToTerminatedProcessFails) {
  Runtime runtime;
  Recorder recorder;
  PID<Recorder> pid = spawn(runtime, recorder);
  terminate(pid);
  wait(pid);
  Future<std::vector<std::string>> f = dispatch(pid, &Recorder::events);
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, f);
  EXPECT_NE(std::string::npos, f.failure().message.find("not running"));
  EXPECT_NE(std::string::npos, f.failure().message.find(pid.id()));
  // A void method gives a future too, and it fails the same way.
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, dispatch(pid, &Recorder::note, std::string("x")));
}

TEST(ProcessTest, DispatchToNeverSpawnedProcessFails) {
  PID<Recorder> nobody;
  EXPECT_FALSE(nobody);
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, dispatch(nobody, &Recorder::events));
  // terminate and wait on it are harmless.
  terminate(nobody);
  EXPECT_TRUE(wait(nobody));
}

class Blocker : public Process<Blocker> {
 public:
  // Occupies the strand until `release` is set.
  void hold(std::shared_ptr<std::atomic<bool>> release, std::shared_ptr<std::atomic<bool>> holding) {
    *holding = true;
    while (!*release) std::this_thread::yield();
  }
  int value() { return 42; }
};

// Keeps `pid`'s strand busy in hold() until the returned flag is set.
std::shared_ptr<std::atomic<bool>> occupy(const PID<Blocker>& pid) {
  auto release = std::make_shared<std::atomic<bool>>(false);
  auto holding = std::make_shared<std::atomic<bool>>(false);
  dispatch(pid, &Blocker::hold, release, holding);
  while (!*holding) std::this_thread::yield();
  return release;
}

TEST(ProcessTest, InjectedTerminateDropsQueuedEvents) {
  Runtime runtime;
  Blocker blocker;
  PID<Blocker> pid = spawn(runtime, blocker);
  auto release = occupy(pid);
  Future<int> queued = dispatch(pid, &Blocker::value);  // behind hold()
  terminate(pid, /*inject=*/true);
  *release = true;
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, queued);
  wait(pid);
}

TEST(ProcessTest, NonInjectedTerminateRunsQueuedEventsFirst) {
  Runtime runtime;
  Blocker blocker;
  PID<Blocker> pid = spawn(runtime, blocker);
  auto release = occupy(pid);
  Future<int> queued = dispatch(pid, &Blocker::value);
  terminate(pid, /*inject=*/false);
  Future<int> late = dispatch(pid, &Blocker::value);  // after the terminate event
  *release = true;
  AWAIT_EXPECT_EQ(42, queued);
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, late);
  wait(pid);
}

TEST(ProcessTest, RuntimeOwnedProcessIsDeletedAfterFinalize) {
  Runtime runtime;
  auto destroyed = std::make_shared<std::atomic<bool>>(false);
  struct Owned : Process<Owned> {
    explicit Owned(std::shared_ptr<std::atomic<bool>> d) : flag(std::move(d)) {}
    ~Owned() override { *flag = true; }
    int ping() { return 1; }
    std::shared_ptr<std::atomic<bool>> flag;
  };
  PID<Owned> pid = spawn(runtime, std::make_unique<Owned>(destroyed));
  AWAIT_EXPECT_EQ(1, dispatch(pid, &Owned::ping));
  terminate(pid);
  EXPECT_TRUE(wait(pid));
  EXPECT_TRUE(*destroyed);
}

TEST(ProcessTest, WaitTimesOutWhileRunning) {
  Runtime runtime;
  Recorder recorder;
  PID<Recorder> pid = spawn(runtime, recorder);
  EXPECT_FALSE(wait(pid, std::chrono::milliseconds(10)));
  terminate(pid);
  EXPECT_TRUE(wait(pid));
}

TEST(ProcessTest, SpawnAfterShutdownGivesATerminatedProcess) {
  Runtime runtime;
  runtime.shutdown();
  Recorder recorder;
  PID<Recorder> pid = spawn(runtime, recorder);
  EXPECT_TRUE(wait(pid, std::chrono::seconds(1)));
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, dispatch(pid, &Recorder::events));
  EXPECT_TRUE(recorder.events().empty());  // initialize never ran
}

TEST(ProcessTest, WaitOnAWorkerThreadDoesNotStarveThePool) {
  // One worker: a process waiting (on that worker) for another process's
  // finalize must keep running events, or it would deadlock.
  Runtime runtime(Runtime::Options{.workerThreads = 1, .blockingThreads = 1});
  Recorder child;
  PID<Recorder> childPid = spawn(runtime, child);
  struct Parent : Process<Parent> {
    bool stopChild(PID<Recorder> c) {
      terminate(c);
      return wait(c, std::chrono::seconds(20));
    }
  } parent;
  PID<Parent> parentPid = spawn(runtime, parent);
  AWAIT_EXPECT_EQ(true, dispatch(parentPid, &Parent::stopChild, childPid));
  EXPECT_TRUE(child.finalized);
  terminate(parentPid);
  wait(parentPid);
}

}  // namespace
}  // namespace prov::actors
