#include <atomic>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "tests/support/await.hpp"

namespace prov::actors {
namespace {

class Worker : public Process<Worker> {
 public:
  int square(int x) { return x * x; }
  std::string join(const std::string& a, std::string b) const { return a + b; }
  void bump() { ++bumps_; }
  int bumps() const { return bumps_; }
  Try<int> parse(const std::string& s) {
    if (s.empty()) return Error(ErrorKind::InvalidArgument, "empty");
    return static_cast<int>(s.size());
  }
  int throws() { throw std::runtime_error("thrown in a method"); }

  // Returns a future completed later by complete(); records discard requests.
  Future<int> slow() {
    pending_ = std::make_shared<Promise<int>>();
    std::weak_ptr<Promise<int>> weak = pending_;
    pending_->future().onDiscard([this, weak, self = self()] {
      // Discard requests may arrive on any thread: hop onto the strand.
      dispatch(self, [this, weak] {
        discardSeen_ = true;
        if (auto p = weak.lock()) p->discard();
      });
    });
    return pending_->future();
  }
  bool discardSeen() const { return discardSeen_; }
  void complete(int v) {
    if (pending_) pending_->set(v);
  }

  // Takes a Copied by reference: what a dispatch of it copies is the
  // dispatch's own doing.
  int copiesSeen(const struct Copied& copied, int value);

  // For defer: a continuation that records which strand it runs on.
  std::string step(const std::string& tag, int value) {
    return tag + ":" + std::to_string(value) + (onStrand() ? ":on-strand" : ":off-strand");
  }

 private:
  int bumps_ = 0;
  bool discardSeen_ = false;
  std::shared_ptr<Promise<int>> pending_;
};

// Counts the copies made of it.
struct Copied {
  explicit Copied(std::atomic<int>* copies) : copies(copies) {}
  Copied(const Copied& other) : copies(other.copies) { ++*copies; }
  Copied(Copied&& other) noexcept = default;
  Copied& operator=(const Copied&) = delete;
  std::atomic<int>* copies;
};

int Worker::copiesSeen(const Copied& copied, int value) { return copied.copies->load() * 100 + value; }

class DispatchTest : public ::testing::Test {
 protected:
  void SetUp() override { pid_ = spawn(runtime_, worker_); }
  void TearDown() override {
    terminate(pid_);
    wait(pid_);
  }
  Runtime runtime_;
  Worker worker_;
  PID<Worker> pid_;
};

TEST_F(DispatchTest, ValueVoidTryAndConstMethods) {
  AWAIT_EXPECT_EQ(49, dispatch(pid_, &Worker::square, 7));
  AWAIT_EXPECT_EQ(std::string("ab"), dispatch(pid_, &Worker::join, std::string("a"), "b"));
  Future<Nothing> bumped = dispatch(pid_, &Worker::bump);
  AWAIT_READY(bumped);
  AWAIT_EXPECT_EQ(1, dispatch(pid_, &Worker::bumps));
  AWAIT_EXPECT_EQ(3, dispatch(pid_, &Worker::parse, std::string("abc")));
  AWAIT_EXPECT_ERROR(ErrorKind::InvalidArgument, dispatch(pid_, &Worker::parse, std::string()));
}

TEST_F(DispatchTest, ExceptionBecomesFailure) {
  auto f = dispatch(pid_, &Worker::throws);
  AWAIT_EXPECT_ERROR(ErrorKind::Internal, f);
  // The process keeps working.
  AWAIT_EXPECT_EQ(4, dispatch(pid_, &Worker::square, 2));
}

TEST_F(DispatchTest, LambdaRunsOnStrand) {
  Future<bool> onStrand = dispatch(pid_, [this] { return worker_.onStrand(); });
  AWAIT_EXPECT_EQ(true, onStrand);
}

TEST_F(DispatchTest, FutureReturningMethodIsAssociated) {
  Future<int> f = dispatch(pid_, &Worker::slow);
  AWAIT_READY(dispatch(pid_, [] {}));  // slow() has run
  EXPECT_TRUE(f.isPending());
  dispatch(pid_, &Worker::complete, 8);
  AWAIT_EXPECT_EQ(8, f);
}

TEST_F(DispatchTest, DiscardPropagatesThroughThreeThensIntoDispatchedMethod) {
  Future<int> source = dispatch(pid_, &Worker::slow);
  Future<int> chain =
      source.then([](int v) { return v + 1; }).then([](int v) { return Future<int>(v * 2); }).then([](int v) {
        return v - 3;
      });
  AWAIT_READY(dispatch(pid_, [] {}));  // slow() has run and its future is pending
  EXPECT_TRUE(chain.discard());
  AWAIT_DISCARDED(chain);
  AWAIT_EXPECT_EQ(true, dispatch(pid_, &Worker::discardSeen));
  EXPECT_TRUE(source.isDiscarded());
}

TEST_F(DispatchTest, DeferRunsContinuationOnTheProcess) {
  Promise<int> promise;
  Future<std::string> out = promise.future().then(defer(pid_, &Worker::step, std::string("tag")));
  // Completed from this (non-runtime) thread; the continuation still runs
  // on the worker's strand.
  promise.set(5);
  AWAIT_EXPECT_EQ(std::string("tag:5:on-strand"), out);

  Future<int> viaLambda = Future<int>(6).then(defer(pid_, [this](int v) { return worker_.onStrand() ? v : -1; }));
  AWAIT_EXPECT_EQ(6, viaLambda);

  Future<int> noArgs = Future<Nothing>(Nothing{}).then(defer(pid_, [] { return 1; }));
  AWAIT_EXPECT_EQ(1, noArgs);
}

// then() calls its continuation once, as an rvalue: a deferred call moves
// what it holds (bound arguments, the callable) into its dispatch. Called
// as an lvalue, which may happen again, it copies.
TEST_F(DispatchTest, AContinuationMovesWhatItHoldsIntoItsDispatch) {
  std::atomic<int> copies{0};
  Promise<int> promise;
  Future<int> bound = promise.future().then(defer(pid_, &Worker::copiesSeen, Copied(&copies)));
  Future<int> captured = promise.future().then(
      defer(pid_, [held = Copied(&copies)](int v) { return held.copies->load() * 100 + v; }));
  promise.set(7);
  AWAIT_EXPECT_EQ(7, bound);
  AWAIT_EXPECT_EQ(7, captured);
  EXPECT_EQ(0, copies.load());

  auto again = defer(pid_, &Worker::copiesSeen, Copied(&copies));
  AWAIT_EXPECT_EQ(101, again(1));
  AWAIT_EXPECT_EQ(202, again(2));
}

TEST_F(DispatchTest, DeferToDeadProcessFailsTheChain) {
  Worker other;
  PID<Worker> otherPid = spawn(runtime_, other);
  terminate(otherPid);
  wait(otherPid);
  Future<std::string> out = Future<int>(1).then(defer(otherPid, &Worker::step, std::string("x")));
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, out);
}

TEST(AsyncTest, RunsOnBlockingPoolNotOnWorkers) {
  Runtime runtime;
  Future<bool> onWorker = async(runtime, [&] { return runtime.onWorkerThread(); });
  AWAIT_EXPECT_EQ(false, onWorker);
  AWAIT_EXPECT_EQ(std::string("x"), async(runtime, [] { return std::string("x"); }));
  AWAIT_READY(async(runtime, [] {}));
  AWAIT_EXPECT_ERROR(ErrorKind::NotFound,
                     async(runtime, []() -> Try<int> { return Error(ErrorKind::NotFound, "gone"); }));
}

TEST(AsyncTest, DiscardBeforeStartSkipsTheWork) {
  Runtime runtime(Runtime::Options{.workerThreads = 1, .blockingThreads = 1});
  auto release = std::make_shared<std::atomic<bool>>(false);
  Future<Nothing> busy = async(runtime, [release] {
    while (!*release) std::this_thread::yield();
  });
  std::atomic<bool> ran{false};
  Future<Nothing> queued = async(runtime, [&] { ran = true; });
  queued.discard();
  *release = true;
  AWAIT_DISCARDED(queued);
  AWAIT_READY(busy);
  EXPECT_FALSE(ran);
}

TEST(AsyncTest, FailsAfterShutdown) {
  Runtime runtime;
  runtime.shutdown();
  bool ran = false;
  Future<Nothing> f = async(runtime, [&] { ran = true; });
  AWAIT_EXPECT_ERROR(ErrorKind::Unavailable, f);
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace prov::actors
