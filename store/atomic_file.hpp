#pragma once

// Durable whole-file replacement: write a temp file beside `path`, fsync it,
// rename it over `path`, fsync the directory. A crash leaves either the old
// or the new content, never a mix. Blocking.

#include <string>
#include <string_view>

#include "actors/error.hpp"

namespace prov::store {

// With `sync` false there is no fsync: a crash of the process still leaves
// the old or the new content (the page cache survives it); a crash of the
// machine may leave the new file empty.
actors::Try<actors::Nothing> writeFileAtomically(const std::string& path, std::string_view content, bool sync = true);

// Removes the temp files writeFileAtomically left in `dir` when the process
// died mid-write ("<name>.tmp-<random>"). Only while nothing writes there:
// at recover.
actors::Try<actors::Nothing> removeStaleTemporaries(const std::string& dir);

// fsync of a directory (after a rename into it).
actors::Try<actors::Nothing> syncDirectory(const std::string& path);

}  // namespace prov::store
