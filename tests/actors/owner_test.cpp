// The pieces outside the core runtime that components share: ProcessOwner
// (a facade owning an actor), Slots (a bound on work in flight) and
// SharedWork (one run of work for everyone asking for the same key).

#include <gtest/gtest.h>

#include <deque>

#include <atomic>

#include "actors/actors.hpp"
#include "actors/shared_work.hpp"
#include "tests/support/await.hpp"

namespace prov::actors {
namespace {

// ---- ProcessOwner -------------------------------------------------------------

class Counter : public Process<Counter> {
 public:
  explicit Counter(std::atomic<int>* finalized) : Process<Counter>("counter"), finalized_(finalized) {}
  int add(int n) { return total_ += n; }

 protected:
  void finalize() override { ++*finalized_; }

 private:
  std::atomic<int>* finalized_;
  int total_ = 0;
};

TEST(ProcessOwnerTest, SpawnsDispatchesAndStopsTheProcess) {
  Runtime runtime;
  std::atomic<int> finalized{0};
  PID<Counter> pid;
  {
    ProcessOwner<Counter> owner(runtime, std::make_unique<Counter>(&finalized));
    pid = owner.pid();
    AWAIT_EXPECT_EQ(2, owner.dispatch(&Counter::add, 2));
    AWAIT_EXPECT_EQ(5, owner.dispatch(&Counter::add, 3));
    EXPECT_EQ(0, finalized.load());
  }
  // Gone: finalize() ran, and a later call fails instead of crashing.
  EXPECT_EQ(1, finalized.load());
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, dispatch(pid, &Counter::add, 1));
}

// A process with background work that its owner must outlive.
class Sweeper : public Process<Sweeper> {
 public:
  Sweeper(Promise<Nothing>* asked, Promise<Nothing>* background, std::atomic<bool>* finalizedEarly)
      : Process<Sweeper>("sweeper"), asked_(asked), background_(background), finalizedEarly_(finalizedEarly) {}
  Future<Nothing> quiesce() {
    asked_->set(Nothing{});
    return background_->future();
  }

 protected:
  void finalize() override { *finalizedEarly_ = background_->future().isPending(); }

 private:
  Promise<Nothing>* asked_;
  Promise<Nothing>* background_;
  std::atomic<bool>* finalizedEarly_;
};

class Host : public Process<Host> {};

// Destroyed on a runtime worker thread (the harder case: the wait must run
// other events, or the quiesce() it waits for could never run).
TEST(ProcessOwnerTest, TheDestructorWaitsForQuiesceBeforeTerminating) {
  Runtime runtime(Runtime::Options{.workerThreads = 1, .blockingThreads = 0});
  Promise<Nothing> asked, background;
  std::atomic<bool> finalizedEarly{true}, destroyed{false};
  auto owner = std::make_unique<ProcessOwner<Sweeper>>(runtime,
                                                       std::make_unique<Sweeper>(&asked, &background, &finalizedEarly));
  Host host;
  PID<Host> hostPid = spawn(runtime, host);
  Future<Nothing> gone = dispatch(hostPid, [&] {
    owner.reset();
    destroyed = true;
  });
  AWAIT_READY(asked.future());
  EXPECT_FALSE(destroyed.load());  // held by the background work
  background.set(Nothing{});
  AWAIT_READY(gone);
  EXPECT_TRUE(destroyed.load());
  EXPECT_FALSE(finalizedEarly.load());  // terminated only after quiesce() was READY
  terminate(hostPid);
  wait(hostPid);
}

// ---- Slots --------------------------------------------------------------------

// Slots is driven from one process; these tests call it from the test
// thread only, with `post` running what it is given at once.
class SlotsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    slots_.setPost([](std::function<void()> f) { f(); });
  }

  // Work that runs until the test ends it; counts its starts.
  Future<Nothing> job(int& started, Promise<Nothing>& end) {
    return slots_.run<Nothing>([&] {
      ++started;
      return end.future();
    });
  }

  Slots slots_{2};
};

TEST_F(SlotsTest, AtMostCountRunFirstComeFirstServed) {
  int a = 0, b = 0, c = 0, d = 0;
  Promise<Nothing> endA, endB, endC, endD;
  Future<Nothing> fa = job(a, endA), fb = job(b, endB), fc = job(c, endC), fd = job(d, endD);
  EXPECT_EQ(1, a);
  EXPECT_EQ(1, b);
  EXPECT_EQ(0, c);
  EXPECT_EQ(0, d);
  EXPECT_EQ(2u, slots_.inUse());
  endA.set(Nothing{});
  AWAIT_READY(fa);
  EXPECT_EQ(1, c);  // the first waiter first
  EXPECT_EQ(0, d);
  endB.fail(Error(ErrorKind::IO, "failed"));  // a failure gives the slot back too
  AWAIT_FAILED(fb);
  EXPECT_EQ(1, d);
  endC.set(Nothing{});
  endD.set(Nothing{});
  AWAIT_READY(fc);
  AWAIT_READY(fd);
  EXPECT_EQ(0u, slots_.inUse());
}

TEST_F(SlotsTest, WorkDiscardedWhileWaitingNeverRunsAndTakesNoSlot) {
  int a = 0, b = 0, gaveUp = 0, next = 0;
  Promise<Nothing> endA, endB, endGaveUp, endNext;
  Future<Nothing> fa = job(a, endA), fb = job(b, endB);
  Future<Nothing> fGaveUp = job(gaveUp, endGaveUp), fNext = job(next, endNext);
  fGaveUp.discard();
  endA.set(Nothing{});
  AWAIT_DISCARDED(fGaveUp);
  EXPECT_EQ(0, gaveUp);
  EXPECT_EQ(1, next);  // the slot passed on past it
  EXPECT_EQ(2u, slots_.inUse());
  endB.set(Nothing{});
  endNext.set(Nothing{});
  AWAIT_READY(fNext);
  EXPECT_EQ(0u, slots_.inUse());
  EXPECT_EQ(0u, slots_.waiting());
}

TEST_F(SlotsTest, ADiscardOfRunningWorkReachesItAndTheSlotComesBack) {
  int a = 0;
  Promise<Nothing> endA;
  bool asked = false;
  endA.future().onDiscard([&] { asked = true; });
  Future<Nothing> fa = job(a, endA);
  fa.discard();
  EXPECT_TRUE(asked);
  endA.discard();
  AWAIT_DISCARDED(fa);
  EXPECT_EQ(0u, slots_.inUse());
}

// Work at a priority that runs until the test ends it; appends its name
// to `order` when it starts.
Future<Nothing> prioritized(Slots& slots, std::vector<std::string>& order, const std::string& name,
                            Promise<Nothing>& end, Slots::Priority priority) {
  return slots.run<Nothing>(
      [&order, &end, name] {
        order.push_back(name);
        return end.future();
      },
      std::move(priority));
}

Slots::Priority at(int priority) { return std::make_shared<const std::atomic<int>>(priority); }

TEST_F(SlotsTest, TheMostUrgentWaiterFirstAsItIsWhenASlotFrees) {
  Slots slots(1);
  slots.setPost([](std::function<void()> f) { f(); });
  std::vector<std::string> order;
  Promise<Nothing> endA, endB, endC, endD;
  auto raised = std::make_shared<std::atomic<int>>(0);
  Future<Nothing> fa = prioritized(slots, order, "a", endA, at(0));
  Future<Nothing> fb = prioritized(slots, order, "b", endB, at(0));
  Future<Nothing> fc = prioritized(slots, order, "c", endC, at(5));
  Future<Nothing> fd = prioritized(slots, order, "d", endD, raised);
  EXPECT_EQ(std::vector<std::string>{"a"}, order);
  // d came last at 0; a more urgent caller joined it since.
  raised->store(9);
  slots.reconsider();
  EXPECT_EQ(std::vector<std::string>{"a"}, order) << "no extra slot was allowed";
  endA.set(Nothing{});
  endD.set(Nothing{});
  endC.set(Nothing{});
  endB.set(Nothing{});
  AWAIT_READY(fb);
  EXPECT_EQ((std::vector<std::string>{"a", "d", "c", "b"}), order);
  EXPECT_EQ(0u, slots.inUse());
}

TEST_F(SlotsTest, AnExtraSlotOnlyForWorkMoreUrgentThanAllThatRuns) {
  Slots slots(2);
  slots.setExtra(1);
  slots.setPost([](std::function<void()> f) { f(); });
  std::vector<std::string> order;
  Promise<Nothing> endA, endB, endC, endD, endE, endF;
  auto raised = std::make_shared<std::atomic<int>>(0);
  Future<Nothing> fa = prioritized(slots, order, "a", endA, at(0));
  Future<Nothing> fb = prioritized(slots, order, "b", endB, at(0));
  Future<Nothing> fc = prioritized(slots, order, "c", endC, raised);
  EXPECT_EQ((std::vector<std::string>{"a", "b"}), order) << "an equal does not take the extra slot";
  Future<Nothing> fd = prioritized(slots, order, "d", endD, at(5));
  EXPECT_EQ((std::vector<std::string>{"a", "b", "d"}), order) << "the urgent one did not wait";
  EXPECT_EQ(3u, slots.inUse());
  Future<Nothing> fe = prioritized(slots, order, "e", endE, at(5));
  Future<Nothing> ff = prioritized(slots, order, "f", endF, at(7));
  EXPECT_EQ(3u, order.size()) << "one extra slot only";
  // a ends: 2 run, which is the bound; f is above them (0 and 5), e is not.
  endA.set(Nothing{});
  AWAIT_READY(fa);
  EXPECT_EQ((std::vector<std::string>{"a", "b", "d", "f"}), order);
  endD.set(Nothing{});
  AWAIT_READY(fd);
  EXPECT_EQ(4u, order.size()) << "e (5) is not above f (7), and 2 run";
  // c, raised above everything running, takes the extra slot now.
  raised->store(8);
  slots.reconsider();
  EXPECT_EQ((std::vector<std::string>{"a", "b", "d", "f", "c"}), order);
  endB.set(Nothing{});
  endF.set(Nothing{});
  AWAIT_READY(ff);
  EXPECT_EQ((std::vector<std::string>{"a", "b", "d", "f", "c", "e"}), order);
  endC.set(Nothing{});
  endE.set(Nothing{});
  AWAIT_READY(fe);
  AWAIT_READY(fc);
  EXPECT_EQ(0u, slots.inUse());
  EXPECT_EQ(0u, slots.waiting());
}

// A burst of thousands waits at once (the provisioner's rootfses): each
// is granted by priority, then arrival, a raised one (reconsidered) first,
// and one given up on is dropped, never run.
TEST_F(SlotsTest, ThousandsOfWaitersAreGrantedByPriorityThenArrival) {
  Slots slots(1);
  // Queued, then run in turn: thousands of grants in a row must not nest.
  std::deque<std::function<void()>> posted;
  slots.setPost([&posted](std::function<void()> f) { posted.push_back(std::move(f)); });
  auto drain = [&posted] {
    while (!posted.empty()) {
      auto f = std::move(posted.front());
      posted.pop_front();
      f();
    }
  };
  std::vector<std::string> order;
  std::deque<Promise<Nothing>> ends;
  std::vector<Future<Nothing>> runs;
  ends.emplace_back();
  runs.push_back(prioritized(slots, order, "first", ends.back(), at(0)));
  const int n = 3000;
  auto raised = std::make_shared<std::atomic<int>>(0);
  for (int i = 0; i < n; ++i) {
    ends.emplace_back();
    runs.push_back(prioritized(slots, order, std::to_string(i), ends.back(), i == 1500 ? raised : at(i % 3)));
  }
  runs[1 + 700].discard();  // priority 1, given up on while waiting
  drain();
  raised->store(5);
  slots.reconsider();
  EXPECT_EQ(static_cast<std::size_t>(n - 1), slots.waiting());
  for (std::size_t i = 0; i < ends.size(); ++i) ends[i].set(Nothing{});
  drain();
  std::vector<std::string> expected = {"first", "1500"};
  for (int priority = 2; priority >= 0; --priority) {
    for (int i = 0; i < n; ++i) {
      if (i % 3 == priority && i != 1500 && i != 700) expected.push_back(std::to_string(i));
    }
  }
  EXPECT_EQ(expected, order);
  AWAIT_DISCARDED(runs[1 + 700]);
  EXPECT_EQ(0u, slots.inUse());
  EXPECT_EQ(0u, slots.waiting());
}

// ---- SharedWork ---------------------------------------------------------------

// SharedWork is driven from one process; these tests call it from the test
// thread only, with `post` running callbacks at once.
class SharedWorkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_.setPost([](std::function<void()> f) { f(); });
  }
  SharedWork<int> work_;
};

TEST_F(SharedWorkTest, CallersOfOneKeyShareOneRun) {
  int started = 0;
  Promise<int> run;
  auto start = [&] {
    ++started;
    return run.future();
  };
  Future<int> first = work_.join("k", start), second = work_.join("k", start);
  EXPECT_EQ(1, started);
  EXPECT_EQ(std::vector<std::string>{"k"}, work_.keys());
  ASSERT_TRUE(work_.peek("k").has_value());
  run.set(7);
  AWAIT_EXPECT_EQ(7, first);
  AWAIT_EXPECT_EQ(7, second);
  EXPECT_TRUE(work_.keys().empty());
  // Done and forgotten: a new join starts afresh.
  Promise<int> again;
  Future<int> third = work_.join("k", [&] {
    ++started;
    return again.future();
  });
  EXPECT_EQ(2, started);
  again.fail(Error(ErrorKind::NotFound, "gone"));
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound, third);
}

TEST_F(SharedWorkTest, TheWorkIsDiscardedOnlyWhenTheLastCallerLeaves) {
  Promise<int> run;
  bool discarded = false;
  run.future().onDiscard([&] { discarded = true; });
  Future<int> first = work_.join("k", [&] { return run.future(); });
  Future<int> second = work_.join("k", [&] { return run.future(); });
  first.discard();
  AWAIT_DISCARDED(first);
  EXPECT_FALSE(discarded);
  second.discard();
  AWAIT_DISCARDED(second);
  EXPECT_TRUE(discarded);
  EXPECT_FALSE(work_.peek("k").has_value());
}

TEST_F(SharedWorkTest, AbandonedWorkAbandonsItsCallersAndIsForgotten) {
  auto run = std::make_unique<Promise<int>>();
  Future<int> first = work_.join("k", [&] { return run->future(); });
  Future<int> second = work_.join("k", [&] { return run->future(); });
  run.reset();  // dropped unfulfilled, as by a runtime that stops
  EXPECT_TRUE(first.isAbandoned());
  EXPECT_TRUE(second.isAbandoned());
  EXPECT_TRUE(work_.keys().empty());
  // A new join starts afresh rather than waiting on the dropped run.
  Promise<int> again;
  int started = 0;
  Future<int> third = work_.join("k", [&] {
    ++started;
    return again.future();
  });
  EXPECT_EQ(1, started);
  again.set(3);
  AWAIT_EXPECT_EQ(3, third);
}

TEST_F(SharedWorkTest, CallersShareTheValueNotCopiesOfIt) {
  SharedWork<std::vector<int>> work;
  work.setPost([](std::function<void()> f) { f(); });
  Promise<std::vector<int>> run;
  Future<std::vector<int>> first = work.join("k", [&] { return run.future(); });
  Future<std::vector<int>> second = work.join("k", [&] { return run.future(); });
  run.set(std::vector<int>{1, 2, 3});
  AWAIT_READY(first);
  AWAIT_READY(second);
  EXPECT_EQ(&run.future().get(), &first.get());
  EXPECT_EQ(&run.future().get(), &second.get());
}

}  // namespace
}  // namespace prov::actors
