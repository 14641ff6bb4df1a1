#pragma once

// A Disk for fault injection (actors/disk.hpp): installed for its lifetime,
// it counts the calls the library makes, by kind, and fails the N-th call
// of a kind (or of any kind) with a chosen errno, once. With none armed it
// lets every call through, so a first run counts an operation's calls and
// the runs after fail each of them in turn (fault::sweep).

#include <signal.h>
#include <unistd.h>

#include <array>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/disk.hpp"
#include "actors/future.hpp"
#include "tests/support/await.hpp"

namespace prov::testing {

using actors::fs::DiskCall;

class FaultyDisk : public actors::fs::Disk {
 public:
  FaultyDisk() : previous_(actors::fs::installDisk(this)) {}
  ~FaultyDisk() override { actors::fs::installDisk(previous_); }
  FaultyDisk(const FaultyDisk&) = delete;
  FaultyDisk& operator=(const FaultyDisk&) = delete;

  // From now, the `n`-th call (1-based) of `kind` (nullopt: of any kind)
  // fails with `error`; the counts start again from zero.
  void failNth(std::optional<DiskCall> kind, long n, int error) {
    std::lock_guard lock(mutex_);
    reset();
    armed_ = Armed{kind, n, error, false};
  }
  // From now, the `n`-th call of `kind` (nullopt: any) kills the process.
  void crashAt(std::optional<DiskCall> kind, long n) {
    std::lock_guard lock(mutex_);
    reset();
    armed_ = Armed{kind, n, 0, true};
  }
  // Lets every call through again and starts the counts from zero.
  void disarm() {
    std::lock_guard lock(mutex_);
    reset();
  }

  long calls(std::optional<DiskCall> kind = std::nullopt) const {
    std::lock_guard lock(mutex_);
    return kind ? counts_[static_cast<int>(*kind)] : total_;
  }
  // The call that was failed ("mkdir 'path'"), if one was.
  std::optional<std::string> failed() const {
    std::lock_guard lock(mutex_);
    return failed_;
  }

 protected:
  int before(DiskCall call, const char* path) override {
    std::lock_guard lock(mutex_);
    const long ofKind = ++counts_[static_cast<int>(call)];
    const long ofAny = ++total_;
    if (!armed_ || failed_) return 0;
    const long n = armed_->kind ? (*armed_->kind == call ? ofKind : 0) : ofAny;
    if (n != armed_->n) return 0;
    if (armed_->crash) ::kill(::getpid(), SIGKILL);
    failed_ = std::string(actors::fs::name(call)) + " '" + path + "'";
    return armed_->error;
  }

 private:
  struct Armed {
    std::optional<DiskCall> kind;
    long n;
    int error;
    bool crash;
  };
  void reset() {
    counts_.fill(0);
    total_ = 0;
    armed_.reset();
    failed_.reset();
  }

  actors::fs::Disk* previous_;
  mutable std::mutex mutex_;
  std::array<long, actors::fs::kDiskCallKinds> counts_{};
  long total_ = 0;
  std::optional<Armed> armed_;
  std::optional<std::string> failed_;
};

namespace fault {

// Runs `setup` then `operation` with no fault, counting the operation's
// disk calls of `kind` (nullopt: all); then, for each N in 1..count, `setup`
// with no fault and `operation` with the N-th such call failing with
// `error`, and `check(n, failedCall)` (what was failed; nullopt when the
// N-th call never came, say because an earlier outcome changed the path).
// Returns the count.
inline long sweep(FaultyDisk& disk, std::optional<DiskCall> kind, int error, const std::function<void()>& setup,
                  const std::function<void()>& operation,
                  const std::function<void(long n, const std::optional<std::string>& failedCall)>& check) {
  disk.disarm();
  setup();
  disk.disarm();
  operation();
  const long count = disk.calls(kind);
  for (long n = 1; n <= count; ++n) {
    disk.disarm();
    setup();
    disk.failNth(kind, n, error);
    operation();
    const auto failedCall = disk.failed();
    disk.disarm();
    check(n, failedCall);
  }
  return count;
}

// After run `n` of a sweep: false (a test failure) when `f` is still
// pending; when it failed, a call must have been failed, and its message
// must say `errnoText` and name one of `paths` (the directories the
// operation works in).
template <typename T>
bool endedClearly(const actors::Future<T>& f, long n, const std::optional<std::string>& failedCall,
                  const std::vector<std::string>& paths, const std::string& errnoText = "No space left on device") {
  if (!f.isReady() && !f.isFailed()) {
    ADD_FAILURE() << "call " << n << ": " << describe(f);
    return false;
  }
  if (f.isReady()) return true;
  const std::string& message = f.failure().message;
  EXPECT_TRUE(failedCall) << "call " << n << ": failed with no fault: " << message;
  EXPECT_NE(std::string::npos, message.find(errnoText)) << "call " << n << ": " << message;
  bool named = false;
  for (const auto& path : paths) named = named || message.find(path) != std::string::npos;
  EXPECT_TRUE(named) << "call " << n << ": names none of the paths: " << message;
  return true;
}

}  // namespace fault

}  // namespace prov::testing
