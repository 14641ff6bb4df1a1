#include "store/file_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <utility>

#include "actors/disk.hpp"

namespace prov::store {

namespace {

// A buffered file's bytes are handed to writeback each time this much more
// of it is written, and its last ones when it ends if they are this many or
// more.
constexpr std::int64_t kWriteBehindBytes = 8 << 20;
constexpr std::int64_t kTailWriteBehindBytes = 256 << 10;

// The file offset alignment O_DIRECT needs on fd's file system, or 0 when
// the kernel does not say (before Linux 6.1), the file system has no
// direct I/O, or it needs more than the staging buffer gives.
std::size_t directAlignment(int fd) {
  struct statx st {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &st) != 0 || (st.stx_mask & STATX_DIOALIGN) == 0) return 0;
  const std::size_t offset = st.stx_dio_offset_align;
  const std::size_t memory = st.stx_dio_mem_align;
  if (offset == 0 || memory == 0 || !std::has_single_bit(offset) || offset > DirectWrites::kAlignment ||
      memory > DirectWrites::kAlignment) {
    return 0;
  }
  return offset;
}

// The flag changes how bytes travel, not what is written, so it bypasses
// the disk seam (as sync_file_range does).
bool setDirect(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return false;
  return ::fcntl(fd, F_SETFL, on ? (flags | O_DIRECT) : (flags & ~O_DIRECT)) == 0;
}

bool writeAll(int fd, const char* data, std::size_t size, std::int64_t offset) {
  for (std::size_t done = 0; done < size;) {
    const ssize_t n = actors::fs::disk().pwrite(fd, data + done, size - done, offset + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// A write of the writing thread: the errno of its failure, or 0.
int writeOut(int fd, const char* data, std::size_t size, std::int64_t offset) {
  if (writeAll(fd, data, size, offset)) return 0;
  if (errno != EINVAL) return errno;
  // The file system opened the file for direct I/O but will not take this
  // write (or a short write left the offset unaligned): this write (again,
  // whole) and the file's next ones go through the page cache.
  if (!setDirect(fd, false)) return errno;
  return writeAll(fd, data, size, offset) ? 0 : errno;
}

}  // namespace

// ---- DirectWrites ------------------------------------------------------------

void DirectWrites::Free::operator()(char* p) const { std::free(p); }

DirectWrites::~DirectWrites() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool DirectWrites::start() {
  if (std::exchange(tried_, true)) return memory_ != nullptr;
  memory_.reset(static_cast<char*>(std::aligned_alloc(kAlignment, kBuffers * kBufferBytes)));
  if (memory_ == nullptr) return false;
  try {
    thread_ = std::thread(&DirectWrites::run, this);
  } catch (const std::system_error&) {
    memory_.reset();
    return false;
  }
  for (std::size_t i = 0; i < kBuffers; ++i) free_.push_back(memory_.get() + i * kBufferBytes);
  return true;
}

char* DirectWrites::take() {
  if (!start()) return nullptr;
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return !free_.empty() || error_ != 0; });
  if (error_ != 0) return nullptr;
  char* buffer = free_.back();
  free_.pop_back();
  return buffer;
}

void DirectWrites::submit(int fd, char* buffer, std::size_t size, std::int64_t offset) {
  {
    std::lock_guard lock(mutex_);
    if (size == 0) {
      free_.push_back(buffer);
    } else {
      queue_.push_back(Write{fd, buffer, size, offset});
    }
  }
  changed_.notify_all();
}

int DirectWrites::wait() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return queue_.empty() && writing_ == 0; });
  return std::exchange(error_, 0);
}

void DirectWrites::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;
    const Write write = queue_.front();
    queue_.pop_front();
    ++writing_;
    // After a failure the file is given up: its other writes are dropped.
    const bool drop = error_ != 0;
    lock.unlock();
    const int error = drop ? 0 : writeOut(write.fd, write.buffer, write.size, write.offset);
    lock.lock();
    --writing_;
    if (error != 0 && error_ == 0) error_ = error;
    free_.push_back(write.buffer);
    changed_.notify_all();
  }
}

// ---- FileWriter --------------------------------------------------------------

FileWriter::FileWriter(int fd, std::int64_t size, DirectWrites& writes) : fd_(fd), writes_(writes) {
  if (size < kDirectBytes) return;
  alignment_ = directAlignment(fd);
  if (alignment_ == 0 || !setDirect(fd, true)) return;
  buffer_ = writes_.take();
  direct_ = buffer_ != nullptr;
  if (!direct_) setDirect(fd, false);
}

FileWriter::~FileWriter() {
  if (buffer_ != nullptr) writes_.submit(fd_, buffer_, 0, 0);
  writes_.wait();
}

bool FileWriter::write(const char* data, std::size_t size, std::int64_t offset) {
  // A hole or a step back: the rest goes through the page cache.
  if (direct_ && offset != base_ + static_cast<std::int64_t>(staged_) && !leaveDirect()) return false;
  if (!direct_) return writeBuffered(data, size, offset);
  end_ = offset + static_cast<std::int64_t>(size);
  while (size > 0) {
    const std::size_t n = std::min(size, DirectWrites::kBufferBytes - staged_);
    std::memcpy(buffer_ + staged_, data, n);
    staged_ += n;
    data += n;
    size -= n;
    if (staged_ == DirectWrites::kBufferBytes && !submitStaged(staged_)) return false;
  }
  return true;
}

bool FileWriter::finish() {
  if (!direct_) {
    // A big file's tail is handed to writeback now, so the disk starts on
    // it while the rest of the layer is extracted (a small file's alone
    // would cost a call each, and is cheaper in the commit's syncfs).
    if (end_ - flushed_ >= kTailWriteBehindBytes) {
      ::sync_file_range(fd_, flushed_, end_ - flushed_, SYNC_FILE_RANGE_WRITE);
      flushed_ = end_;
    }
    return true;
  }
  // What is short of one alignment goes through the page cache, once the
  // direct writes before it are done.
  const std::size_t aligned = staged_ & ~(alignment_ - 1);
  char tail[DirectWrites::kAlignment];
  const std::size_t rest = staged_ - aligned;
  std::memcpy(tail, buffer_ + aligned, rest);
  writes_.submit(fd_, std::exchange(buffer_, nullptr), aligned, base_);
  base_ += static_cast<std::int64_t>(aligned);
  staged_ = 0;
  direct_ = false;
  if (!waitForDirect()) return false;
  if (rest == 0) return true;
  return setDirect(fd_, false) && writeAll(fd_, tail, rest, base_);
}

bool FileWriter::writeBuffered(const char* data, std::size_t size, std::int64_t offset) {
  if (!writeAll(fd_, data, size, offset)) return false;
  end_ = std::max<std::int64_t>(end_, offset + static_cast<std::int64_t>(size));
  // Start writing a big file back while the rest is extracted, so the
  // layer's syncfs at commit finds little left to write. Only a start,
  // never a wait; nothing rests on it, since the commit's syncfs is what
  // makes the layer durable, so a failure is ignored and the call bypasses
  // the disk seam.
  if (end_ - flushed_ >= kWriteBehindBytes) {
    ::sync_file_range(fd_, flushed_, end_ - flushed_, SYNC_FILE_RANGE_WRITE);
    flushed_ = end_;
  }
  return true;
}

// Hands the full staging buffer to the writing thread, and takes the next.
bool FileWriter::submitStaged(std::size_t bytes) {
  writes_.submit(fd_, std::exchange(buffer_, nullptr), bytes, base_);
  base_ += static_cast<std::int64_t>(bytes);
  staged_ = 0;
  buffer_ = writes_.take();
  if (buffer_ != nullptr) return true;
  direct_ = false;
  if (waitForDirect()) errno = EIO;  // take() fails only after a write did
  return false;
}

bool FileWriter::waitForDirect() {
  const int error = writes_.wait();
  if (error == 0) return true;
  errno = error;
  return false;
}

// From here on the file is written through the page cache, starting with
// what is staged, once the direct writes before it are done.
bool FileWriter::leaveDirect() {
  direct_ = false;
  const std::size_t staged = std::exchange(staged_, 0);
  bool ok = waitForDirect() && setDirect(fd_, false);
  if (ok) {
    flushed_ = base_;
    ok = writeBuffered(buffer_, staged, base_);
  }
  writes_.submit(fd_, std::exchange(buffer_, nullptr), 0, 0);
  return ok;
}

}  // namespace prov::store
