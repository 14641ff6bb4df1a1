#pragma once

// Running a helper program (a Docker credential helper) from inside an
// agent's process, without giving it anything of the agent's:
//   - no descriptor but its stdin, stdout and stderr: ours are
//     close-on-exec, and the child closes every other one before exec
//     (posix_spawn with closefrom), so a descriptor an embedder opened
//     without close-on-exec does not reach it either;
//   - stdin is `input` then end of file, stdout is read (at most
//     `maxOutput` bytes; the rest is drained and dropped), stderr goes to
//     /dev/null;
//   - its own process group, so a timeout kills what it started too;
//   - reaped by its own pid, never by waitpid(-1): an embedder's children
//     stay the embedder's to reap.
// Blocking: call it on the blocking pool.

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "fetcher/types.hpp"

namespace prov::fetcher {

struct SubprocessResult {
  int status = -1;  // the exit status; -1 when killed by a signal
  std::string output;
  bool timedOut = false;  // killed after the timeout
};

// `argv[0]` is searched in PATH's absolute directories (never "." or an
// empty entry: not the agent's current directory). NotFound when it is not there (or not
// executable); IO when it cannot be started otherwise.
Try<SubprocessResult> runSubprocess(const std::vector<std::string>& argv, std::string_view input,
                                    std::chrono::milliseconds timeout, std::size_t maxOutput = 64 * 1024);

}  // namespace prov::fetcher
