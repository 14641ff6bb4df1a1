#include "actors/runtime.hpp"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <exception>
#include <system_error>

#include "actors/process.hpp"
#include "actors/runtime_impl.hpp"

namespace prov::actors {

namespace {

thread_local Runtime::Impl* workerRuntime = nullptr;
thread_local Runtime::Impl* blockingRuntime = nullptr;  // set while a task of either pool runs

std::size_t cores() { return std::max(1u, std::thread::hardware_concurrency()); }

Runtime::Options resolve(Runtime::Options options) {
  if (options.workerThreads == 0) options.workerThreads = cores();
  if (options.startedWorkerThreads == 0 || options.startedWorkerThreads > options.workerThreads) {
    options.startedWorkerThreads = options.workerThreads;
  }
  if (options.blockingThreads == 0) options.blockingThreads = std::max<std::size_t>(4, 2 * cores());
  // Waits, not work: as many as overlap usefully. 16-32 unmounts at once
  // let ext4 commit them together (bench_backend, 64 pairs in flight on 2
  // cores: 940-1,150 per second with 4 at once, 2,030-2,220 with 32); a
  // bare loop of the same syscalls gained nothing past 32.
  if (options.waitingThreads == 0) options.waitingThreads = 32;
  options.waitingKeepAlive = std::clamp(options.waitingKeepAlive, std::chrono::milliseconds::zero(),
                                        std::chrono::milliseconds(std::chrono::hours(24)));
  return options;
}

}  // namespace

namespace detail {
Runtime::Impl* currentWorkerRuntime() { return workerRuntime; }
}  // namespace detail

bool BlockingPool::post(std::function<void()> task) {
  std::vector<std::thread> retired;
  const bool posted = [&] {
    std::lock_guard lock(mutex_);
    retired.swap(retired_);  // joined below, outside the lock
    tasks_.push_back(std::move(task));
    if (idle_ >= tasks_.size() || live_ >= limit_) {
      wake_.notify_one();
      return true;
    }
    try {
      threads_.emplace_back([this] { run(); });
      ++live_;
    } catch (const std::system_error&) {
      if (live_ > 0) return true;  // a running thread takes it in its turn
      tasks_.pop_back();
      return false;
    }
    return true;
  }();
  // Each has left run() (and so the lock) before it was listed.
  for (auto& thread : retired) thread.join();
  return posted;
}

void BlockingPool::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    auto ready = [this] { return !tasks_.empty() || joining_; };
    const bool woken = keepAlive_ == std::chrono::milliseconds::zero() ? (wake_.wait(lock, ready), true)
                                                                       : wake_.wait_for(lock, keepAlive_, ready);
    --idle_;
    if (!woken) {  // idle for keepAlive_: this thread ends, and is joined later
      const auto self = std::find_if(threads_.begin(), threads_.end(),
                                     [](const std::thread& t) { return t.get_id() == std::this_thread::get_id(); });
      if (self != threads_.end()) {
        retired_.push_back(std::move(*self));
        threads_.erase(self);
      }
      --live_;
      return;
    }
    if (tasks_.empty()) {  // joining, and nothing is left
      --live_;
      return;
    }
    auto task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    task = nullptr;  // what it holds goes before the next wait
    lock.lock();
  }
}

void BlockingPool::join() {
  std::unique_lock lock(mutex_);
  // Each retired thread has left run() (and so the lock) before it was listed.
  for (auto& thread : retired_) thread.join();
  retired_.clear();
  joining_ = true;
  wake_.notify_all();
  // A task that posts another while the pool winds down starts a thread
  // after the swap below: the loop joins that one too.
  while (!threads_.empty()) {
    std::vector<std::thread> threads;
    threads.swap(threads_);
    lock.unlock();
    for (auto& thread : threads) thread.join();
    lock.lock();
  }
  joining_ = false;
}

std::size_t BlockingPool::threads() {
  std::lock_guard lock(mutex_);
  return live_;
}

Runtime::Impl::Impl(Options o)
    // The io_context keeps the default concurrency hint even with one worker:
    // with hint 1, Asio keeps events posted from inside a handler in a
    // thread-private queue until that handler returns, which a wait() that
    // runs other events meanwhile (process.cpp) would never see.
    : options(o), blocking(o.blockingThreads), waiting(o.waitingThreads, o.waitingKeepAlive) {}

void Runtime::Impl::eventPosted() {
  std::lock_guard lock(pendingMutex);
  ++pending;
}

void Runtime::Impl::eventDone() {
  std::lock_guard lock(pendingMutex);
  if (--pending == 0) pendingCv.notify_all();
}

void Runtime::Impl::settle() {
  std::unique_lock lock(pendingMutex);
  pendingCv.wait(lock, [this] { return pending == 0; });
}

Runtime::Runtime() : Runtime(Options{}) {}

Runtime::Runtime(Options options) : impl_(std::make_shared<Impl>(resolve(options))) {
  impl_->clock = std::make_unique<Clock>(*this);
  impl_->guard.emplace(impl_->io.get_executor());
  std::unique_lock lock(impl_->workersMutex);
  try {
    impl_->startWorkers(impl_->options.startedWorkerThreads);
  } catch (...) {
    // The ones started are joined before the runtime is given up on.
    std::vector<std::thread> started;
    started.swap(impl_->workers);
    lock.unlock();
    impl_->guard.reset();
    impl_->io.stop();
    for (auto& worker : started) worker.join();
    throw;
  }
}

void Runtime::Impl::startWorkers(std::size_t count) {
  while (workers.size() < count) {
    workers.emplace_back([impl = this] {
      workerRuntime = impl;
      for (;;) {
        try {
          impl->io.run();
          return;
        } catch (const std::exception& e) {
          // Handlers in this project do not throw; one that does is a bug,
          // but it must not take the worker down with it.
          std::fprintf(stderr, "runtime: unexpected exception in a handler: %s\n", e.what());
        }
      }
    });
  }
  if (workers.size() >= options.workerThreads) allWorkers.store(true);
}

void Runtime::startAllWorkers() {
  if (impl_->allWorkers.load()) return;
  std::lock_guard lock(impl_->workersMutex);
  if (impl_->allWorkers.load()) return;  // started meanwhile, or shutdown() has begun
  try {
    impl_->startWorkers(impl_->options.workerThreads);
  } catch (const std::exception& e) {
    // No thread to be had (a pids limit): the workers running carry on.
    std::fprintf(stderr, "runtime: a worker thread could not be started: %s\n", e.what());
    impl_->allWorkers.store(true);
  }
}

std::size_t Runtime::startedWorkers() const {
  std::lock_guard lock(impl_->workersMutex);
  return impl_->workers.size();
}

Runtime::~Runtime() {
  shutdown();
  // The clock refers to this Runtime; the rest of Impl may live on in
  // processes that outlive it.
  impl_->clock.reset();
}

// Joins every offloaded thread, those that start meanwhile too.
static void joinOffloaded(Runtime::Impl& impl) {
  for (;;) {
    std::vector<Runtime::Impl::Offloaded> threads;
    {
      std::lock_guard lock(impl.offloadMutex);
      threads.swap(impl.offloaded);
    }
    if (threads.empty()) return;
    for (auto& t : threads) t.thread.join();
  }
}

void Runtime::shutdown() {
  if (impl_->stopped.load()) return;
  assert(!onRuntimeThread() && "Runtime::shutdown() on one of its own threads");
  {
    std::lock_guard lock(impl_->workersMutex);
    impl_->allWorkers.store(true);  // no held-back worker starts from here on
  }
  // Teardowns handed over by offload() first: they need the runtime running.
  joinOffloaded(*impl_);
  {
    std::lock_guard lock(impl_->submitMutex);
    impl_->accepting.store(false);
  }

  // Processes first: their finalize() may still use timers and handlers.
  std::vector<std::shared_ptr<detail::ProcessContext>> live;
  {
    std::lock_guard lock(impl_->processesMutex);
    for (auto& [raw, weak] : impl_->processes) {
      if (auto context = weak.lock()) live.push_back(std::move(context));
    }
  }
  for (auto& context : live) detail::terminate(context, true);
  for (auto& context : live) detail::wait(context, std::chrono::nanoseconds::max());

  impl_->clock->cancelAll();
  impl_->blocking.join();
  impl_->waiting.join();
  impl_->settle();

  joinOffloaded(*impl_);
  impl_->guard.reset();
  impl_->io.stop();
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(impl_->workersMutex);
    workers.swap(impl_->workers);
  }
  for (auto& worker : workers) worker.join();
  impl_->stopped.store(true);
}

bool Runtime::accepting() const { return impl_->accepting.load(); }
Clock& Runtime::clock() { return *impl_->clock; }
boost::asio::io_context& Runtime::ioContext() { return impl_->io; }
std::size_t Runtime::workerThreads() const { return impl_->options.workerThreads; }
std::size_t Runtime::blockingThreads() const { return impl_->options.blockingThreads; }
std::size_t Runtime::waitingThreads() const { return impl_->options.waitingThreads; }
bool Runtime::onWorkerThread() const { return workerRuntime == impl_.get(); }
bool Runtime::onRuntimeThread() const { return workerRuntime == impl_.get() || blockingRuntime == impl_.get(); }

void Runtime::offload(std::function<void()> work) {
  if (impl_->stopped.load()) {
    work();  // no runtime thread is left to block
    return;
  }
  std::lock_guard lock(impl_->offloadMutex);
  // The ones that ended are joined now, not at shutdown.
  std::erase_if(impl_->offloaded, [](Impl::Offloaded& t) {
    if (!t.done->load()) return false;
    t.thread.join();
    return true;
  });
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread thread([work = std::move(work), done] {
    work();
    done->store(true);
  });
  impl_->offloaded.push_back({std::move(thread), std::move(done)});
}
void Runtime::settle() { impl_->settle(); }

namespace detail {

bool submitBlocking(Runtime& runtime, std::function<void()> task, Pool pool) {
  Runtime::Impl& impl = runtime.impl();
  std::lock_guard lock(impl.submitMutex);
  if (!impl.accepting.load()) return false;
  impl.eventPosted();
  BlockingPool& to = pool == Pool::Waiting ? impl.waiting : impl.blocking;
  const bool posted = to.post([&impl, task = std::move(task)] {
    blockingRuntime = &impl;
    try {
      task();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "runtime: unexpected exception in a blocking task: %s\n", e.what());
    }
    blockingRuntime = nullptr;
    impl.eventDone();
  });
  if (!posted) {
    std::fprintf(stderr, "runtime: no blocking thread could be started for a task: it is refused\n");
    impl.eventDone();
  }
  return posted;
}

}  // namespace detail

}  // namespace prov::actors
