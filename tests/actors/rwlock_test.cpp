#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "tests/support/await.hpp"

namespace prov::actors {
namespace {

TEST(ReadWriteLockTest, ReadersShare) {
  ReadWriteLock lock;
  Future<Nothing> r1 = lock.readLock();
  Future<Nothing> r2 = lock.readLock();
  EXPECT_TRUE(r1.isReady());
  EXPECT_TRUE(r2.isReady());
  EXPECT_EQ(2u, lock.readers());
  lock.readUnlock();
  lock.readUnlock();
  EXPECT_EQ(0u, lock.readers());
}

TEST(ReadWriteLockTest, WriterWaitsForTwoReaders) {
  ReadWriteLock lock;
  ASSERT_TRUE(lock.readLock().isReady());
  ASSERT_TRUE(lock.readLock().isReady());
  Future<Nothing> w = lock.writeLock();
  EXPECT_TRUE(w.isPending());
  lock.readUnlock();
  EXPECT_TRUE(w.isPending());
  lock.readUnlock();
  EXPECT_TRUE(w.isReady());
  EXPECT_TRUE(lock.writerHolds());
  lock.writeUnlock();
}

TEST(ReadWriteLockTest, ReadersQueueBehindWaitingWriterInOrder) {
  ReadWriteLock lock;
  ASSERT_TRUE(lock.readLock().isReady());
  Future<Nothing> w1 = lock.writeLock();
  Future<Nothing> r2 = lock.readLock();  // writer-preferring: waits
  Future<Nothing> r3 = lock.readLock();
  Future<Nothing> w2 = lock.writeLock();
  EXPECT_TRUE(w1.isPending());
  EXPECT_TRUE(r2.isPending());
  EXPECT_EQ(4u, lock.waiting());

  lock.readUnlock();
  EXPECT_TRUE(w1.isReady());
  EXPECT_TRUE(r2.isPending());

  lock.writeUnlock();  // the run of readers goes in together, w2 waits
  EXPECT_TRUE(r2.isReady());
  EXPECT_TRUE(r3.isReady());
  EXPECT_TRUE(w2.isPending());

  lock.readUnlock();
  lock.readUnlock();
  EXPECT_TRUE(w2.isReady());
  lock.writeUnlock();
}

TEST(ReadWriteLockTest, ReentrantReaderBehindQueuedWriterDoesNotDeadlock) {
  // Mesos's deadlock: destroy holds a read lock, prune queues for write, and
  // a recursive destroy asks for a read lock behind the writer.
  ReadWriteLock lock;
  ASSERT_TRUE(lock.readLock().isReady());  // outer destroy
  Future<Nothing> prune = lock.writeLock();
  EXPECT_TRUE(prune.isPending());

  // Through readLock() the nested reader would wait for the writer, which
  // waits for the outer reader: a cycle.
  Future<Nothing> wrong = lock.readLock();
  EXPECT_TRUE(wrong.isPending());
  wrong.discard();  // withdraw it
  EXPECT_TRUE(wrong.isDiscarded());

  // The documented path is granted at once.
  lock.readLockReentrant();  // nested destroy
  EXPECT_EQ(2u, lock.readers());
  lock.readUnlock();  // nested done
  EXPECT_TRUE(prune.isPending());
  lock.readUnlock();  // outer done
  EXPECT_TRUE(prune.isReady());
  lock.writeUnlock();
}

TEST(ReadWriteLockTest, DiscardedWriterLetsReadersBehindItIn) {
  ReadWriteLock lock;
  ASSERT_TRUE(lock.readLock().isReady());
  Future<Nothing> w = lock.writeLock();
  Future<Nothing> r = lock.readLock();
  EXPECT_TRUE(r.isPending());
  w.discard();
  EXPECT_TRUE(w.isDiscarded());
  EXPECT_TRUE(r.isReady());
  lock.readUnlock();
  lock.readUnlock();
}

TEST(ReadWriteLockTest, ConcurrentUseFromProcesses) {
  Runtime runtime;
  ReadWriteLock lock;
  struct User : Process<User> {
    explicit User(ReadWriteLock* l, std::atomic<int>* w, std::atomic<int>* r) : lock(l), writers(w), readers(r) {}
    Future<Nothing> work(bool write, int rounds) {
      return loop(
          self(), [this, write] { return write ? lock->writeLock() : lock->readLock(); },
          [this, write, rounds](const Nothing&) -> ControlFlow<Nothing> {
            if (write) {
              if (writers->fetch_add(1) != 0 || readers->load() != 0) violations++;
              writers->fetch_sub(1);
              lock->writeUnlock();
            } else {
              readers->fetch_add(1);
              if (writers->load() != 0) violations++;
              readers->fetch_sub(1);
              lock->readUnlock();
            }
            return ++done == rounds ? ControlFlow<Nothing>(Break()) : ControlFlow<Nothing>(Continue());
          });
    }
    ReadWriteLock* lock;
    std::atomic<int>* writers;
    std::atomic<int>* readers;
    int done = 0;
    int violations = 0;
  };
  std::atomic<int> writers{0}, readers{0};
  std::vector<std::unique_ptr<User>> users;
  std::vector<PID<User>> pids;
  std::vector<Future<Nothing>> runs;
  for (int i = 0; i < 6; ++i) {
    users.push_back(std::make_unique<User>(&lock, &writers, &readers));
    pids.push_back(spawn(runtime, *users.back()));
    runs.push_back(dispatch(pids.back(), &User::work, i % 3 == 0, 2000));
  }
  AWAIT_READY_FOR(collect(runs), std::chrono::seconds(120));
  for (size_t i = 0; i < users.size(); ++i) {
    terminate(pids[i]);
    wait(pids[i]);
    EXPECT_EQ(0, users[i]->violations);
  }
  EXPECT_EQ(0u, lock.readers());
  EXPECT_FALSE(lock.writerHolds());
}

}  // namespace
}  // namespace prov::actors
