#pragma once

// Processes (actors). A Process<T> has its own strand on the runtime's
// io_context: every call into it (dispatch, defer) is an event queued on that
// strand, so its state is touched by one thread at a time and needs no lock.
//
//   class Counter : public Process<Counter> {
//    public:
//     int add(int n) { return total_ += n; }
//    private:
//     int total_ = 0;
//   };
//   Counter counter;
//   PID<Counter> pid = spawn(runtime, counter);
//   Future<int> f = dispatch(pid, &Counter::add, 2);
//   terminate(pid);
//   wait(pid);          // finalize() has run; `counter` may now be destroyed
//
// Lifecycle. spawn() queues initialize() as the first event. terminate()
// queues finalize(): with inject=true (the default) events already queued are
// dropped (their futures fail with ErrorKind::Unavailable); with inject=false
// they run first. After finalize() no event runs, and every later dispatch
// fails at once. A PID that was never spawned behaves like a terminated one.
// wait() blocks until finalize() has run; on a runtime worker thread it runs
// other events while it waits, so it cannot starve the pool. A process that
// was spawned must be terminated and waited for before it is destroyed, unless
// the runtime owns it (spawn with a unique_ptr), in which case the runtime
// deletes it after finalize().

#include <chrono>
#include <memory>
#include <string>
#include <type_traits>

#include "actors/future.hpp"

namespace prov::actors {

class Runtime;
class ProcessBase;

namespace detail {

struct ProcessContext;  // process.cpp

// An event gets running=true when its process is running as the event reaches
// the front of its strand's queue, false when the process was terminated in
// the meantime (the event must then not touch the process object).
using Event = std::function<void(bool running)>;

// Queues `event` on the context's strand. Returns false, without queuing,
// when the context is null or no longer running.
bool post(const std::shared_ptr<ProcessContext>& context, Event event);

const std::string& contextId(const std::shared_ptr<ProcessContext>& context);
bool onStrand(const std::shared_ptr<ProcessContext>& context);
Error notRunning(const std::string& id);

std::shared_ptr<ProcessContext> spawn(Runtime& runtime, ProcessBase& process, std::unique_ptr<ProcessBase> owned);
void terminate(const std::shared_ptr<ProcessContext>& context, bool inject);
bool wait(const std::shared_ptr<ProcessContext>& context, std::chrono::nanoseconds timeout);
bool waitFor(const std::shared_ptr<ProcessContext>& context, const Future<Nothing>& future,
             std::chrono::nanoseconds timeout);
Future<Nothing> terminated(const std::shared_ptr<ProcessContext>& context);
const std::shared_ptr<ProcessContext>& contextOf(const ProcessBase& process);

}  // namespace detail

// A typed, copyable handle to a process. It does not keep the process object
// alive; dispatching through it after termination fails cleanly.
template <typename T>
class PID {
 public:
  PID() = default;
  PID(std::shared_ptr<detail::ProcessContext> context, T* process) : context_(std::move(context)), process_(process) {}
  // clang-format 14 garbles requires-clauses:
  // clang-format off
  template <typename U>
    requires std::is_convertible_v<U*, T*>
  PID(const PID<U>& other)  // NOLINT: derived-to-base, like pointers
      : context_(other.context()), process_(other.process()) {}
  // clang-format on

  // "<name>(<n>)"; empty for a PID that was never spawned.
  const std::string& id() const { return detail::contextId(context_); }
  explicit operator bool() const { return context_ != nullptr; }
  bool operator==(const PID& other) const { return context_ == other.context_; }

  // For dispatch and defer.
  const std::shared_ptr<detail::ProcessContext>& context() const { return context_; }
  T* process() const { return process_; }

 private:
  std::shared_ptr<detail::ProcessContext> context_;
  T* process_ = nullptr;
};

class ProcessBase {
 public:
  // `name` prefixes the id given at spawn, e.g. "docker-store(3)".
  explicit ProcessBase(std::string name = "process");
  virtual ~ProcessBase();
  ProcessBase(const ProcessBase&) = delete;
  ProcessBase& operator=(const ProcessBase&) = delete;

  const std::string& id() const;
  // Precondition: spawned.
  Runtime& runtime() const;
  // True when the calling thread is running this process's strand. For
  // assertions in debug builds.
  bool onStrand() const;

 protected:
  // First event after spawn.
  virtual void initialize() {}
  // Last event; runs on the strand. Complete or fail what is pending here.
  virtual void finalize() {}

 private:
  friend struct detail::ProcessContext;
  friend std::shared_ptr<detail::ProcessContext> detail::spawn(Runtime&, ProcessBase&, std::unique_ptr<ProcessBase>);
  friend const std::shared_ptr<detail::ProcessContext>& detail::contextOf(const ProcessBase&);
  std::string name_;
  Runtime* runtime_ = nullptr;
  std::shared_ptr<detail::ProcessContext> context_;
};

template <typename T>
class Process : public ProcessBase {
 public:
  using ProcessBase::ProcessBase;

  PID<T> self() const { return PID<T>(context(), static_cast<T*>(const_cast<Process*>(this))); }

 protected:
  using Self = T;

 private:
  const std::shared_ptr<detail::ProcessContext>& context() const;
};

template <typename T>
const std::shared_ptr<detail::ProcessContext>& Process<T>::context() const {
  return detail::contextOf(*this);
}

// Spawns a process the caller owns.
template <typename T>
PID<T> spawn(Runtime& runtime, T& process) {
  return PID<T>(detail::spawn(runtime, process, nullptr), &process);
}

// Spawns a process the runtime owns and deletes after finalize().
template <typename T>
PID<T> spawn(Runtime& runtime, std::unique_ptr<T> process) {
  T* raw = process.get();
  return PID<T>(detail::spawn(runtime, *raw, std::move(process)), raw);
}

template <typename T>
void terminate(const PID<T>& pid, bool inject = true) {
  detail::terminate(pid.context(), inject);
}

// True when the process has finished finalize() (or never ran) within
// `timeout`.
template <typename T>
bool wait(const PID<T>& pid, std::chrono::nanoseconds timeout = std::chrono::nanoseconds::max()) {
  return detail::wait(pid.context(), timeout);
}

// READY once finalize() has run.
template <typename T>
Future<Nothing> terminated(const PID<T>& pid) {
  return detail::terminated(pid.context());
}

}  // namespace prov::actors
