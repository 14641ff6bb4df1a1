#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "tests/support/await.hpp"

namespace prov::actors {
namespace {

TEST(CollectTest, KeepsInputOrder) {
  std::vector<Promise<int>> promises(3);
  std::vector<Future<int>> futures;
  for (auto& p : promises) futures.push_back(p.future());
  Future<std::vector<int>> all = collect(futures);
  promises[2].set(30);
  promises[0].set(10);
  EXPECT_TRUE(all.isPending());
  promises[1].set(20);
  AWAIT_EXPECT_EQ((std::vector<int>{10, 20, 30}), all);
}

TEST(CollectTest, EmptyIsReady) { AWAIT_EXPECT_EQ(std::vector<int>{}, collect(std::vector<Future<int>>{})); }

TEST(CollectTest, FailsFastAndDiscardsTheRest) {
  Promise<int> slow;
  Promise<int> failing;
  bool slowDiscardRequested = false;
  slow.future().onDiscard([&] { slowDiscardRequested = true; });
  Future<std::vector<int>> all = collect(std::vector<Future<int>>{slow.future(), failing.future()});
  failing.fail(Error(ErrorKind::DigestMismatch, "layer 2 differs"));
  // Failed without waiting for `slow`.
  AWAIT_EXPECT_ERROR(ErrorKind::DigestMismatch, all);
  EXPECT_EQ("layer 2 differs", all.failure().message);
  EXPECT_TRUE(slowDiscardRequested);
}

TEST(CollectTest, DiscardedInputFailsCollect) {
  Promise<int> a;
  Future<std::vector<int>> all = collect(std::vector<Future<int>>{a.future()});
  a.discard();
  AWAIT_EXPECT_ERROR(ErrorKind::Cancelled, all);
}

TEST(CollectTest, DiscardingResultDiscardsInputs) {
  Promise<int> a, b;
  int requests = 0;
  a.future().onDiscard([&] { ++requests; });
  b.future().onDiscard([&] { ++requests; });
  Future<std::vector<int>> all = collect(std::vector<Future<int>>{a.future(), b.future()});
  all.discard();
  EXPECT_EQ(2, requests);
}

TEST(CollectTest, AbandonedInputAbandonsResult) {
  Promise<int> kept;
  Future<std::vector<int>> all;
  {
    Promise<int> dying;
    all = collect(std::vector<Future<int>>{kept.future(), dying.future()});
  }
  EXPECT_TRUE(all.isAbandoned());
}

TEST(CollectTest, Variadic) {
  Promise<int> a;
  Promise<std::string> b;
  Future<std::tuple<int, std::string>> both = collect(a.future(), b.future());
  b.set("x");
  a.set(1);
  AWAIT_READY(both);
  EXPECT_EQ(1, std::get<0>(both.get()));
  EXPECT_EQ("x", std::get<1>(both.get()));

  Promise<int> c;
  Future<std::tuple<int, int>> failed = collect(c.future(), Future<int>(Error(ErrorKind::IO, "x")));
  AWAIT_EXPECT_ERROR(ErrorKind::IO, failed);
}

TEST(CollectTest, CompletedFromManyThreads) {
  constexpr int kCount = 1000;
  std::vector<Promise<int>> promises(kCount);
  std::vector<Future<int>> futures;
  for (auto& p : promises) futures.push_back(p.future());
  Future<std::vector<int>> all = collect(futures);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kCount; i += 4) promises[i].set(i);
    });
  }
  for (auto& t : threads) t.join();
  AWAIT_READY(all);
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(i, all.get()[i]);
}

TEST(AwaitTest, NeverFails) {
  Promise<int> a, b, c;
  Future<std::vector<Future<int>>> all = await(std::vector<Future<int>>{a.future(), b.future(), c.future()});
  a.fail(Error(ErrorKind::IO, "x"));
  b.discard();
  EXPECT_TRUE(all.isPending());
  c.set(3);
  AWAIT_READY(all);
  EXPECT_TRUE(all.get()[0].isFailed());
  EXPECT_TRUE(all.get()[1].isDiscarded());
  EXPECT_EQ(3, all.get()[2].get());
}

TEST(AwaitTest, AbandonedInputCountsAsDone) {
  Future<std::vector<Future<int>>> all;
  {
    Promise<int> dying;
    all = await(std::vector<Future<int>>{dying.future(), Future<int>(1)});
  }
  AWAIT_READY(all);
  EXPECT_TRUE(all.get()[0].isAbandoned());
}

TEST(AwaitTest, VariadicAndDiscard) {
  Promise<int> a;
  Promise<std::string> b;
  bool requested = false;
  a.future().onDiscard([&] { requested = true; });
  auto both = await(a.future(), b.future());
  both.discard();
  EXPECT_TRUE(requested);
  a.fail(Error(ErrorKind::IO, "x"));
  b.set("y");
  // Inputs completed after the discard request: the result is DISCARDED.
  AWAIT_DISCARDED(both);

  Promise<int> c;
  Promise<std::string> d;
  auto kept = await(c.future(), d.future());
  c.fail(Error(ErrorKind::IO, "x"));
  d.set("y");
  AWAIT_READY(kept);
  EXPECT_TRUE(std::get<0>(kept.get()).isFailed());
  EXPECT_EQ("y", std::get<1>(kept.get()).get());
}

}  // namespace
}  // namespace prov::actors
