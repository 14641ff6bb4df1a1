#pragma once

// The live per-layer progress display of `pull` and `provision`, for a
// terminal (the command draws it only when stderr is one):
//
//   3f2a9c1d0b7e  downloading    1.4 MiB / 2.0 MiB     3.1 MiB/s
//   8c01d2e3f4a5  waiting            0 B / 512 B
//
// One line per layer (short blob digest, phase, bytes, rate), in the order
// the layers first reported. The rate is over the last second while a layer
// downloads, and its average download rate after. The block is redrawn in
// place (cursor up, clear line) at most 10 times a second by a thread of its
// own, so the store's threads only record. Nothing is ever drawn when no
// layer reported (an image already stored). Every line ends with a newline:
// whatever the command prints next starts on a line of its own.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "store/image_store.hpp"

namespace prov::cmd {

class ProgressDisplay {
 public:
  // Draws on `fd` (a terminal; its width, if known, truncates the lines).
  explicit ProgressDisplay(int fd);
  ~ProgressDisplay();  // finish()

  ProgressDisplay(const ProgressDisplay&) = delete;
  ProgressDisplay& operator=(const ProgressDisplay&) = delete;

  // For ImageStoreOptions::progress: records the event under a mutex, never
  // draws; callable from any thread, also after the display is gone (then it
  // does nothing).
  std::function<void(const store::LayerProgress&)> callback();

  // Stops the drawing thread and draws the last state, if any layer
  // reported. Idempotent; events after it are ignored.
  void finish();

 private:
  struct State;
  std::shared_ptr<State> state_;
  std::thread drawer_;
};

// 0 B, 512 B, 1.5 KiB, 20.0 MiB, 1.2 GiB (powers of 1024, one decimal).
std::string humanBytes(std::int64_t bytes);

}  // namespace prov::cmd
