#pragma once

// Internals of the local pullers (local.hpp): blocking file reads, lexical
// path checks, and the verified chunk stream into a ByteSink.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "actors/future.hpp"
#include "fetcher/byte_sink.hpp"
#include "fetcher/puller.hpp"
#include "fetcher/types.hpp"
#include "messages/image.pb.h"

namespace prov::actors {
class Runtime;
}

namespace prov::fetcher::local {

// The whole file, at most `limit` bytes. NotFound when it does not exist,
// ResourceExhausted when it is larger, IO otherwise; messages start with
// `what`. Blocking.
Try<std::string> readFile(const std::string& path, std::size_t limit, const std::string& what);

// What stat says: NotFound when missing, IO otherwise. Blocking.
Try<bool> isDirectory(const std::string& path, const std::string& what);
bool isRegularFile(const std::string& path);

// A blob's bytes in order, read on the blocking pool only, one call at a time.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  // Up to `max` bytes; empty at the end. Valid until the next call.
  virtual Try<std::string_view> next(std::size_t max) = 0;
};
using SourceOpener = std::function<Try<std::unique_ptr<ChunkSource>>()>;

// Reads a file; NotFound when it does not exist.
Try<std::unique_ptr<ChunkSource>> openFile(const std::string& path, const std::string& what);
// Hands out `bytes`.
std::unique_ptr<ChunkSource> fromBytes(std::string bytes);

// Opens the source and streams it into `sink` on the blocking pool: chunks of
// kLocalChunkBytes, each hashed before it goes to the sink and each write
// awaited before the next read. READY when the size and digest match `blob`
// (a negative size is not checked); DigestMismatch otherwise, as soon as the
// source has more bytes than the size. A discard request stops it at the
// next chunk (DISCARDED) and is passed to a pending sink write. Messages
// start with `what`.
actors::Future<Nothing> streamBlob(actors::Runtime& runtime, SourceOpener open, const messages::Descriptor& blob,
                                   std::shared_ptr<ByteSink> sink, std::string what);

// A local blob's one source: notes it, and refuses a later one (a restart
// after a failure has nowhere else to go).
Try<Nothing> oneSource(const std::shared_ptr<BlobSources>& sources, const messages::Descriptor& blob);

// "a/./b//c" -> "a/b/c". InvalidArgument when `path` is empty, absolute or
// has a ".." component.
Try<std::string> normalizeRelative(std::string_view path);

// Where a link at `entry` (normalised) pointing at `target` leads, as a
// normalised path from the same root: a relative target is taken from the
// entry's directory (or, `fromRoot`, from the root, as tar hardlinks are).
// InvalidArgument when it is absolute or climbs out of the root.
Try<std::string> resolveLink(std::string_view entry, std::string_view target, bool fromRoot);

// `path` without trailing slashes ("/" stays).
std::string trimSlashes(std::string path);

}  // namespace prov::fetcher::local
