#include "actors/process.hpp"

#include <cstdio>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include "actors/runtime_impl.hpp"

namespace prov::actors {
namespace detail {

struct ProcessContext {
  enum class State { Running, Terminating, Terminated };

  ProcessContext(std::shared_ptr<Runtime::Impl> i, std::string name, ProcessBase* p)
      : owner(std::move(i)), impl(*owner), id(std::move(name)), strand(boost::asio::make_strand(impl.io)), process(p),
        exited(exitedPromise.future()) {}

  // Runs the last event of the process: finalize(), then the bookkeeping
  // that lets wait() return and lets the owner delete the object.
  static void finalizeNow(const std::shared_ptr<ProcessContext>& context);
  // No event runs after this; the runtime forgets the process.
  void markTerminated();
  // wait() returns and terminated() becomes READY.
  void releaseWaiters();

  std::shared_ptr<Runtime::Impl> owner;  // keeps the io_context alive for `strand`
  Runtime::Impl& impl;
  const std::string id;
  boost::asio::strand<boost::asio::io_context::executor_type> strand;
  std::atomic<State> state{State::Running};
  std::atomic<bool> finalizeQueued{false};
  std::atomic<ProcessBase*> process;   // null once the object is being destroyed
  std::unique_ptr<ProcessBase> owned;  // set when the runtime owns the process

  Promise<Nothing> exitedPromise;
  Future<Nothing> exited;
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
};

namespace {

void report(const char* what, const std::string& id, const std::exception& e) {
  std::fprintf(stderr, "runtime: %s of process '%s' threw: %s\n", what, id.c_str(), e.what());
}

// Posts a bookkeeping event that runs whatever the state.
template <typename F>
void postSystem(const std::shared_ptr<ProcessContext>& context, F&& f) {
  context->impl.eventPosted();
  boost::asio::post(context->strand, [context, f = std::forward<F>(f)]() mutable {
    f();
    context->impl.eventDone();
  });
}

}  // namespace

void ProcessContext::markTerminated() {
  state.store(State::Terminated);
  std::lock_guard lock(impl.processesMutex);
  impl.processes.erase(this);
}

void ProcessContext::releaseWaiters() {
  {
    std::lock_guard lock(mutex);
    done = true;
  }
  cv.notify_all();
  exitedPromise.set(Nothing{});
}

void ProcessContext::finalizeNow(const std::shared_ptr<ProcessContext>& context) {
  if (context->state.load() == State::Terminated) return;
  context->state.store(State::Terminating);
  if (ProcessBase* object = context->process.load()) {
    try {
      object->finalize();
    } catch (const std::exception& e) {
      report("finalize()", context->id, e);
    }
  }
  context->markTerminated();
  // A runtime-owned process is deleted after finalize() and before anyone
  // waiting for the termination is released.
  context->owned.reset();
  context->releaseWaiters();
}

bool post(const std::shared_ptr<ProcessContext>& context, Event event) {
  if (!context || context->state.load() != ProcessContext::State::Running) return false;
  context->impl.eventPosted();
  boost::asio::post(context->strand, [context, event = std::move(event)] {
    event(context->state.load() == ProcessContext::State::Running);
    context->impl.eventDone();
  });
  return true;
}

const std::string& contextId(const std::shared_ptr<ProcessContext>& context) {
  static const std::string none;
  return context ? context->id : none;
}

bool onStrand(const std::shared_ptr<ProcessContext>& context) {
  return context && context->strand.running_in_this_thread();
}

Error notRunning(const std::string& id) {
  return Error(ErrorKind::Unavailable, "Failed to dispatch to process '" +
                                           (id.empty() ? std::string("<unspawned>") : id) + "': it is not running");
}

std::shared_ptr<ProcessContext> spawn(Runtime& runtime, ProcessBase& process, std::unique_ptr<ProcessBase> owned) {
  Runtime::Impl& impl = runtime.impl();
  assert(!process.context_ && "a process can be spawned once");
  std::string id = process.name_ + "(" + std::to_string(++impl.nextProcessNumber) + ")";
  auto context = std::make_shared<ProcessContext>(runtime.sharedImpl(), std::move(id), &process);
  process.runtime_ = &runtime;
  process.context_ = context;

  if (!impl.accepting.load()) {
    context->finalizeQueued.store(true);
    context->markTerminated();
    owned.reset();
    context->releaseWaiters();
    return context;
  }
  context->owned = std::move(owned);
  {
    std::lock_guard lock(impl.processesMutex);
    impl.processes.emplace(context.get(), context);
  }
  postSystem(context, [raw = context.get()] {
    if (raw->state.load() != ProcessContext::State::Running) return;
    try {
      raw->process.load()->initialize();
    } catch (const std::exception& e) {
      report("initialize()", raw->id, e);
    }
  });
  return context;
}

void terminate(const std::shared_ptr<ProcessContext>& context, bool inject) {
  if (!context || context->finalizeQueued.exchange(true)) return;
  if (context->state.load() == ProcessContext::State::Terminated) return;
  if (inject) {
    auto running = ProcessContext::State::Running;
    context->state.compare_exchange_strong(running, ProcessContext::State::Terminating);
  }
  postSystem(context, [context] { ProcessContext::finalizeNow(context); });
}

bool wait(const std::shared_ptr<ProcessContext>& context, std::chrono::nanoseconds timeout) {
  if (!context) return true;
  using SteadyClock = std::chrono::steady_clock;
  const bool forever = timeout == std::chrono::nanoseconds::max();
  const auto deadline = forever ? SteadyClock::time_point::max() : SteadyClock::now() + timeout;
  auto isDone = [&] {
    std::lock_guard lock(context->mutex);
    return context->done;
  };

  if (currentWorkerRuntime() == &context->impl) {
    // Waiting for ourselves can never succeed.
    if (context->strand.running_in_this_thread()) return isDone();
    // On a worker: run other events while waiting, so that a pool of N
    // workers all waiting cannot starve the events they wait for.
    while (!isDone()) {
      if (SteadyClock::now() >= deadline) return false;
      context->impl.io.run_one_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  std::unique_lock lock(context->mutex);
  if (forever) {
    context->cv.wait(lock, [&] { return context->done; });
    return true;
  }
  return context->cv.wait_until(lock, deadline, [&] { return context->done; });
}

bool waitFor(const std::shared_ptr<ProcessContext>& context, const Future<Nothing>& future,
             std::chrono::nanoseconds timeout) {
  if (!context || currentWorkerRuntime() != &context->impl) return future.waitFor(timeout);
  // On a worker: run other events while waiting, as wait() does.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (future.isPending() && !future.isAbandoned()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    context->impl.io.run_one_for(std::chrono::milliseconds(1));
  }
  return true;
}

Future<Nothing> terminated(const std::shared_ptr<ProcessContext>& context) {
  if (!context) return Nothing{};
  return context->exited;
}

const std::shared_ptr<ProcessContext>& contextOf(const ProcessBase& process) { return process.context_; }

}  // namespace detail

ProcessBase::ProcessBase(std::string name) : name_(std::move(name)) {}

ProcessBase::~ProcessBase() {
  auto context = context_;
  if (!context || context->state.load() == detail::ProcessContext::State::Terminated) return;
  // The owner did not terminate and wait: finalize() can no longer run (the
  // derived object is gone). Drop queued events, let a running one finish,
  // and release waiters.
  std::fprintf(stderr, "runtime: process '%s' destroyed while running; terminate and wait first\n",
               context->id.c_str());
  context->process.store(nullptr);
  context->state.store(detail::ProcessContext::State::Terminating);
  if (!context->strand.running_in_this_thread() && context->impl.accepting.load()) {
    if (!context->finalizeQueued.exchange(true)) {
      detail::postSystem(context, [context] { detail::ProcessContext::finalizeNow(context); });
    }
    detail::wait(context, std::chrono::nanoseconds::max());
  } else {
    context->markTerminated();
    context->releaseWaiters();
  }
}

const std::string& ProcessBase::id() const { return context_ ? context_->id : name_; }

Runtime& ProcessBase::runtime() const {
  assert(runtime_ && "ProcessBase::runtime() before spawn");
  return *runtime_;
}

bool ProcessBase::onStrand() const { return detail::onStrand(context_); }

}  // namespace prov::actors
