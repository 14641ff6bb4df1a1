#pragma once

// One regular file's bytes, written as a tar hands them over: in order, with
// holes between pieces, or (no tar writer does it, but a tar may) out of
// order. Internal to the extractor (tar_apply.cpp); not installed.
//
// A big file skips the page cache (issue #18, §2). Copying a 1 GiB layer's
// file into new page-cache pages was most of its extraction's CPU, and the
// commit's syncfs then wrote them all again. Such a file is opened for
// O_DIRECT; its bytes are staged in aligned buffers, which a thread of the
// extraction's writes while the next ones fill (a direct write waits for
// the device, and the extraction should not). Its last few bytes (less than
// one alignment) go through the page cache.
//
// A file with a hole, a file system without direct I/O (statx reports no
// alignment), or one that refuses a direct write (EINVAL) gets ordinary
// writes instead, from where it stands. A smaller file is always written
// through the page cache, and its bytes are handed to writeback as it grows
// so that the commit's syncfs finds little left to do.
//
// Durability is unchanged: the commit's syncfs makes both kinds durable.

#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace prov::store {

// The direct writes of one extraction: its aligned buffers and the thread
// that writes them, both made at its first big file and reused by the next.
class DirectWrites {
 public:
  static constexpr std::size_t kBufferBytes = 1 << 20;
  static constexpr std::size_t kBuffers = 4;
  static constexpr std::size_t kAlignment = 4096;

  DirectWrites() = default;
  ~DirectWrites();
  DirectWrites(const DirectWrites&) = delete;
  DirectWrites& operator=(const DirectWrites&) = delete;

  // A buffer to fill, once one is free; nullptr when the buffers or the
  // thread cannot be made, or when a write failed (see wait()).
  char* take();
  // Writes `size` bytes of `buffer` (from take()) at `offset` of `fd`, and
  // frees the buffer. A write the file system refuses (EINVAL) is made
  // again through the page cache, and so are the file's next ones.
  void submit(int fd, char* buffer, std::size_t size, std::int64_t offset);
  // Waits until every write submitted is done. Returns the errno of the
  // first that failed since the last wait(), or 0.
  int wait();

 private:
  struct Write {
    int fd;
    char* buffer;
    std::size_t size;
    std::int64_t offset;
  };
  bool start();
  void run();

  struct Free {
    void operator()(char* p) const;
  };
  std::unique_ptr<char, Free> memory_;
  bool tried_ = false;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<char*> free_;
  std::deque<Write> queue_;
  std::size_t writing_ = 0;  // taken off the queue, not yet done
  int error_ = 0;
  bool stopping_ = false;
};

class FileWriter {
 public:
  // Files of this many bytes or more are written with O_DIRECT.
  static constexpr std::int64_t kDirectBytes = 8 << 20;

  // `fd` is the new, empty file, open for writing; `size` is what its
  // entry says it holds. Both `fd` and `writes` outlive the writer.
  FileWriter(int fd, std::int64_t size, DirectWrites& writes);
  // Waits for the file's direct writes: none outlives the writer (the fd
  // is closed after it).
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  // The calls below return false with errno set when the disk refused a
  // write; the file is then incomplete, and its layer is given up.

  // `size` bytes at `offset`.
  bool write(const char* data, std::size_t size, std::int64_t offset);
  // After the last piece: writes what is still staged, and waits for it.
  bool finish();

  // One past the last byte written (the file's size before any last hole).
  std::int64_t end() const { return end_; }
  // Whether the file's bytes still go through the staging buffers (the
  // writing thread may have found the file system refusing O_DIRECT and
  // be writing them through the page cache meanwhile).
  bool direct() const { return direct_; }

 private:
  bool writeBuffered(const char* data, std::size_t size, std::int64_t offset);
  bool submitStaged(std::size_t bytes);
  bool waitForDirect();
  bool leaveDirect();

  const int fd_;
  DirectWrites& writes_;
  bool direct_ = false;
  std::size_t alignment_ = 0;
  char* buffer_ = nullptr;    // the staging buffer being filled
  std::int64_t base_ = 0;     // the file offset of its first byte
  std::size_t staged_ = 0;    // bytes in it
  std::int64_t end_ = 0;      // one past the last byte handed to write()
  std::int64_t flushed_ = 0;  // buffered bytes before this are handed to writeback
};

}  // namespace prov::store
