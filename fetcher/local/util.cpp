#include "fetcher/local/util.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <optional>
#include <vector>

#include "actors/async.hpp"
#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include "actors/path.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/local/local.hpp"

namespace prov::fetcher::local {

using actors::Future;
using actors::Promise;

namespace {

Error fileError(const std::string& what, const std::string& path, int errnum) {
  return actors::errnoError(errnum == ENOENT || errnum == ENOTDIR ? ErrorKind::NotFound : ErrorKind::IO,
                            what + ": '" + path + "'", errnum);
}

using actors::fs::Fd;

Try<int> openRegular(const std::string& path, const std::string& what) {
  const int fd = actors::fs::disk().openat(AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fileError(what, path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int errnum = errno;
    ::close(fd);
    return fileError(what, path, errnum);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error(ErrorKind::Corruption, what + ": '" + path + "' is not a regular file");
  }
  return fd;
}

// Reads up to `size` bytes (fewer only at the end of the file).
Try<std::size_t> readFully(int fd, char* buffer, std::size_t size, const std::string& what, const std::string& path) {
  std::size_t total = 0;
  while (total < size) {
    const ssize_t n = actors::fs::disk().read(fd, buffer + total, size - total);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fileError(what, path, errno);
    }
    if (n == 0) break;
    total += static_cast<std::size_t>(n);
  }
  return total;
}

class FileSource final : public ChunkSource {
 public:
  FileSource(int fd, std::string path, std::string what) : fd_(fd), path_(std::move(path)), what_(std::move(what)) {}
  Try<std::string_view> next(std::size_t max) override {
    buffer_.resize(max);
    auto n = readFully(fd_.get(), buffer_.data(), max, what_, path_);
    if (n.isError()) return n.error();
    return std::string_view(buffer_.data(), *n);
  }

 private:
  Fd fd_;
  std::string path_;
  std::string what_;
  std::string buffer_;
};

class BytesSource final : public ChunkSource {
 public:
  explicit BytesSource(std::string bytes) : bytes_(std::move(bytes)) {}
  Try<std::string_view> next(std::size_t max) override {
    std::string_view rest = std::string_view(bytes_).substr(offset_);
    rest = rest.substr(0, max);
    offset_ += rest.size();
    return rest;
  }

 private:
  std::string bytes_;
  std::size_t offset_ = 0;
};

// One blob on its way to a sink; owns itself through the callbacks it is in.
class Stream : public std::enable_shared_from_this<Stream> {
 public:
  Stream(actors::Runtime& runtime, SourceOpener open, const messages::Descriptor& blob, std::shared_ptr<ByteSink> sink,
         std::string what)
      : runtime_(runtime), open_(std::move(open)), blob_(blob), sink_(std::move(sink)), what_(std::move(what)) {}

  Future<Nothing> start() {
    Future<Nothing> result = promise_.future();
    std::weak_ptr<Stream> weak = weak_from_this();
    // Done at once: the sink may be slow to give up, and the chunk it holds
    // stays alive with this stream until its write completes.
    result.onDiscard([weak] {
      if (auto self = weak.lock()) {
        self->promise_.discard();
        self->discardWrite();
      }
    });
    auto check = BlobCheck::create(blob_.digest(), blob_.size(), what_);
    if (check.isError()) {
      promise_.fail(check.error());
      return result;
    }
    check_.emplace(std::move(*check));
    readNext();
    return result;
  }

 private:
  // On the blocking pool: the next chunk, hashed and counted.
  Try<std::string_view> read() {
    if (!source_) {
      auto opened = open_();
      if (opened.isError()) return opened.error();
      source_ = std::move(*opened);
    }
    auto chunk = source_->next(kLocalChunkBytes);
    if (chunk.isError()) return chunk.error();
    auto admitted = check_->admit(chunk->size());
    if (admitted.isError()) return admitted.error();
    check_->hash(*chunk);
    return *chunk;
  }

  void readNext() {
    if (!promise_.future().isPending()) return;
    if (promise_.future().hasDiscard()) {
      promise_.discard();
      return;
    }
    auto self = shared_from_this();
    actors::async(runtime_, [self] { return self->read(); }).onAny([self](const Future<std::string_view>& chunk) {
      self->deliver(chunk);
    });
  }

  void deliver(const Future<std::string_view>& chunk) {
    if (!promise_.future().isPending()) return;  // discarded meanwhile
    if (chunk.isFailed()) {
      promise_.fail(chunk.failure());
      return;
    }
    if (!chunk.isReady()) {
      promise_.discard();
      return;
    }
    if (chunk.get().empty()) {
      auto done = check_->finish();
      done.isError() ? promise_.fail(done.error()) : promise_.set(Nothing{});
      return;
    }
    std::shared_ptr<ByteSink> sink;
    {
      std::lock_guard lock(mutex_);
      sink = sink_;
    }
    if (!sink) {
      promise_.discard();  // let go of by a discard
      return;
    }
    Future<Nothing> written;
    try {
      written = sink->write(chunk.get());
    } catch (...) {
      written = Error(ErrorKind::Internal, what_ + ": the sink threw");
    }
    {
      std::lock_guard lock(mutex_);
      writing_ = written;
    }
    // A discard that came before writing_ was set found nothing to drop:
    // drop it now (and let go of it, as discardWrite() does).
    if (promise_.future().hasDiscard()) discardWrite();
    auto self = shared_from_this();
    written.onAny([self](const Future<Nothing>& w) {
      {
        std::lock_guard lock(self->mutex_);
        self->writing_ = Future<Nothing>(Nothing{});
      }
      if (w.isFailed()) {
        self->promise_.fail(w.failure());
      } else if (!w.isReady()) {
        self->promise_.discard();
      } else {
        self->readNext();
      }
    });
  }

  // Asks the sink to drop the write in flight, and lets go of the write and
  // of the sink: a sink that never completes the write holds this stream
  // (through the write's callback), so this stream must not hold the sink.
  void discardWrite() {
    Future<Nothing> writing;
    std::shared_ptr<ByteSink> sink;
    {
      std::lock_guard lock(mutex_);
      writing = std::exchange(writing_, Future<Nothing>(Nothing{}));
      sink = std::move(sink_);
    }
    writing.discard();
  }

  actors::Runtime& runtime_;
  SourceOpener open_;
  const messages::Descriptor blob_;
  std::shared_ptr<ByteSink> sink_;
  std::string what_;
  Promise<Nothing> promise_;
  // Touched by one step at a time (each waits for the previous).
  std::unique_ptr<ChunkSource> source_;
  std::optional<BlobCheck> check_;
  std::mutex mutex_;  // guards writing_ and sink_
  Future<Nothing> writing_{Nothing{}};
};

}  // namespace

Try<std::string> readFile(const std::string& path, std::size_t limit, const std::string& what) {
  auto fd = openRegular(path, what);
  if (fd.isError()) return fd.error();
  Fd owned(*fd);
  std::string content(limit + 1, '\0');
  auto n = readFully(owned.get(), content.data(), content.size(), what, path);
  if (n.isError()) return n.error();
  if (*n > limit) {
    return Error(ErrorKind::ResourceExhausted,
                 what + ": '" + path + "' is over the limit of " + std::to_string(limit) + " bytes");
  }
  content.resize(*n);
  return content;
}

Try<bool> isDirectory(const std::string& path, const std::string& what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return fileError(what, path, errno);
  return S_ISDIR(st.st_mode);
}

bool isRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Try<std::unique_ptr<ChunkSource>> openFile(const std::string& path, const std::string& what) {
  auto fd = openRegular(path, what);
  if (fd.isError()) return fd.error();
  return std::unique_ptr<ChunkSource>(std::make_unique<FileSource>(*fd, path, what));
}

std::unique_ptr<ChunkSource> fromBytes(std::string bytes) { return std::make_unique<BytesSource>(std::move(bytes)); }

Future<Nothing> streamBlob(actors::Runtime& runtime, SourceOpener open, const messages::Descriptor& blob,
                           std::shared_ptr<ByteSink> sink, std::string what) {
  if (!sink) return Error(ErrorKind::InvalidArgument, what + ": no sink");
  return std::make_shared<Stream>(runtime, std::move(open), blob, std::move(sink), std::move(what))->start();
}

Try<Nothing> oneSource(const std::shared_ptr<BlobSources>& sources, const messages::Descriptor& blob) {
  if (!sources) return Nothing{};
  sources->known(1);
  if (sources->first() == 0) return Nothing{};
  return Error(ErrorKind::InvalidArgument, "Failed to fetch the blob '" + blob.digest() +
                                               "': a local blob has one source, source " +
                                               std::to_string(sources->first()) + " was asked for");
}

Try<std::string> normalizeRelative(std::string_view path) {
  const std::string shown(path.substr(0, 200));
  if (path.empty()) return Error(ErrorKind::InvalidArgument, "an empty path");
  if (path.front() == '/') return Error(ErrorKind::InvalidArgument, "'" + shown + "' is absolute");
  std::vector<std::string_view> parts;
  if (!actors::path::walk(parts, path, false))
    return Error(ErrorKind::InvalidArgument, "'" + shown + "' has a '..' component");
  if (parts.empty()) return Error(ErrorKind::InvalidArgument, "'" + shown + "' names no file");
  return actors::path::join(parts);
}

Try<std::string> resolveLink(std::string_view entry, std::string_view target, bool fromRoot) {
  const std::string shown(target.substr(0, 200));
  if (target.empty() || target.front() == '/') {
    return Error(ErrorKind::InvalidArgument, "the link '" + std::string(entry) + "' points at '" + shown + "'");
  }
  std::vector<std::string_view> parts;
  if (!fromRoot) {
    actors::path::walk(parts, entry, false);
    if (!parts.empty()) parts.pop_back();  // the link's own name
  }
  if (!actors::path::walk(parts, target, true) || parts.empty()) {
    return Error(ErrorKind::InvalidArgument,
                 "the link '" + std::string(entry) + "' points outside the archive ('" + shown + "')");
  }
  return actors::path::join(parts);
}

std::string trimSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

}  // namespace prov::fetcher::local
