#include "bench/pull_layer.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>

#include "bench/pull_process.hpp"
#include "testkit/image_builder.hpp"

namespace prov::bench::pull {

namespace fs = std::filesystem;

// ---- Prng ----------------------------------------------------------------------

Prng::Prng(std::uint64_t seed) {
  for (auto& word : s_) {  // splitmix64
    std::uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    word = z ^ (z >> 31);
  }
}

std::uint64_t Prng::next() {
  auto rotl = [](std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

void Prng::fill(char* data, std::size_t size) {
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const std::uint64_t word = next();
    std::memcpy(data + i, &word, 8);
  }
  if (i < size) {
    const std::uint64_t word = next();
    std::memcpy(data + i, &word, size - i);
  }
}

namespace {

// 2048 pseudo-words of 2-9 letters, the same in every run: text of them
// compresses about as well as the many-small files of perf-anchors.md.
constexpr int kWordBits = 11;

const std::vector<std::string>& words() {
  static const std::vector<std::string> table = [] {
    Prng prng(0x776f726473ULL);
    std::vector<std::string> t;
    for (int i = 0; i < (1 << kWordBits); ++i) {
      std::string w(2 + prng.below(8), 'a');
      for (auto& c : w) c = static_cast<char>('a' + prng.below(26));
      t.push_back(w);
    }
    return t;
  }();
  return table;
}

}  // namespace

void Prng::fillText(char* data, std::size_t size) {
  const auto& table = words();
  std::size_t i = 0;
  int onLine = 0;
  while (i < size) {
    const std::uint64_t r = next();
    for (int k = 0; k < 64 / kWordBits && i < size; ++k) {
      const std::string& w = table[(r >> (kWordBits * k)) & ((1u << kWordBits) - 1)];
      for (std::size_t j = 0; j < w.size() && i < size; ++j) data[i++] = w[j];
      if (i < size) data[i++] = (++onLine % 12 == 0) ? '\n' : ' ';
    }
  }
}

void LayerStats::add(const LayerStats& o) {
  entries += o.entries;
  files += o.files;
  directories += o.directories;
  symlinks += o.symlinks;
  hardlinks += o.hardlinks;
  whiteouts += o.whiteouts;
  fileBytes += o.fileBytes;
}

// ---- LayerWriter -----------------------------------------------------------------

namespace {

using EntryPtr = std::unique_ptr<archive_entry, decltype(&archive_entry_free)>;

EntryPtr newEntry(const std::string& path, unsigned mode, std::int64_t mtime) {
  EntryPtr entry(archive_entry_new(), archive_entry_free);
  archive_entry_set_pathname(entry.get(), path.c_str());
  archive_entry_set_uid(entry.get(), 0);
  archive_entry_set_gid(entry.get(), 0);
  archive_entry_set_mtime(entry.get(), mtime, 0);
  archive_entry_set_perm(entry.get(), mode & 07777);
  return entry;
}

std::string baseName(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string dirName(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

}  // namespace

LayerWriter::LayerWriter(const fs::path& blobsDir) : blobsDir_(blobsDir), diffId_(*fetcher::Hasher::create("sha256")) {
  fs::create_directories(blobsDir_);
  temporary_ = blobsDir_ / ("layer-" + std::to_string(::getpid()) + ".tmp");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("Failed to create a pipe: ") + std::strerror(errno));
  ::fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
  try {
    pigz_ = spawnFilter({"pigz", "-n", "-6", "-c"}, fds[0], temporary_, blobsDir_ / "pigz.log");
  } catch (...) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
  ::close(fds[0]);
  pipe_ = fds[1];
  archive_ = archive_write_new();
  archive_write_set_format_pax_restricted(archive_);
  archive_write_set_bytes_per_block(archive_, 64 * 1024);
  archive_write_set_bytes_in_last_block(archive_, 1);
  if (archive_write_open2(archive_, this, nullptr, &LayerWriter::onWrite, nullptr, nullptr) != ARCHIVE_OK) {
    abort();
    throw std::runtime_error("Failed to start a layer tar");
  }
}

LayerWriter::~LayerWriter() { abort(); }

void LayerWriter::abort() {
  if (archive_) {
    archive_write_free(archive_);
    archive_ = nullptr;
  }
  if (pipe_ >= 0) {
    ::close(pipe_);
    pipe_ = -1;
  }
  if (pigz_ > 0) {
    ::kill(pigz_, SIGKILL);
    try {
      waitTimed(pigz_, std::chrono::steady_clock::now(), std::chrono::seconds(10));
    } catch (...) {
    }
    pigz_ = -1;
  }
  std::error_code ec;
  fs::remove(temporary_, ec);
}

long LayerWriter::onWrite(struct archive*, void* self, const void* data, std::size_t size) {
  auto* writer = static_cast<LayerWriter*>(self);
  writer->diffId_.update(data, size);
  writer->tarBytes_ += size;
  const char* p = static_cast<const char*>(data);
  std::size_t left = size;
  while (left > 0) {
    const ssize_t n = ::write(writer->pipe_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      writer->writeFailed_ = true;
      return -1;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return static_cast<long>(size);
}

void LayerWriter::ensureParents(const std::string& path) {
  const std::string parent = dirName(path);
  if (parent.empty() || directories_.count(parent)) return;
  addDirectory(parent);
}

namespace {

void check(int rc, struct archive* a, bool pipeFailed, const std::string& path) {
  if (rc >= ARCHIVE_WARN) return;
  throw std::runtime_error("Failed to write '" + path +
                           "' to a layer: " + (pipeFailed ? "pigz stopped reading" : archive_error_string(a)));
}

}  // namespace

void LayerWriter::addDirectory(const std::string& path, unsigned mode, std::int64_t mtime) {
  if (directories_.count(path)) return;
  ensureParents(path);
  auto entry = newEntry(path, mode, mtime);
  archive_entry_set_filetype(entry.get(), AE_IFDIR);
  check(archive_write_header(archive_, entry.get()), archive_, writeFailed_, path);
  directories_.insert(path);
  ++stats_.entries;
  ++stats_.directories;
}

void LayerWriter::addFileFrom(const std::string& path, std::uint64_t size,
                              const std::function<void(char*, std::size_t)>& fill, unsigned mode, std::int64_t mtime) {
  ensureParents(path);
  auto entry = newEntry(path, mode, mtime);
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
  check(archive_write_header(archive_, entry.get()), archive_, writeFailed_, path);
  static thread_local std::vector<char> buffer(1 << 20);
  for (std::uint64_t done = 0; done < size;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - done));
    fill(buffer.data(), n);
    if (archive_write_data(archive_, buffer.data(), n) < 0) check(ARCHIVE_FATAL, archive_, writeFailed_, path);
    done += n;
  }
  ++stats_.entries;
  ++stats_.files;
  stats_.fileBytes += size;
  if (baseName(path).rfind(".wh.", 0) == 0) ++stats_.whiteouts;
}

void LayerWriter::addFile(const std::string& path, std::string_view content, unsigned mode, std::int64_t mtime) {
  std::size_t at = 0;
  addFileFrom(
      path, content.size(),
      [&](char* data, std::size_t n) {
        std::memcpy(data, content.data() + at, n);
        at += n;
      },
      mode, mtime);
}

void LayerWriter::addSymlink(const std::string& path, const std::string& target) {
  ensureParents(path);
  auto entry = newEntry(path, 0777, kMtime);
  archive_entry_set_filetype(entry.get(), AE_IFLNK);
  archive_entry_set_symlink(entry.get(), target.c_str());
  check(archive_write_header(archive_, entry.get()), archive_, writeFailed_, path);
  ++stats_.entries;
  ++stats_.symlinks;
}

void LayerWriter::addHardlink(const std::string& path, const std::string& target) {
  ensureParents(path);
  auto entry = newEntry(path, 0644, kMtime);
  archive_entry_set_hardlink(entry.get(), target.c_str());
  check(archive_write_header(archive_, entry.get()), archive_, writeFailed_, path);
  ++stats_.entries;
  ++stats_.hardlinks;
}

void LayerWriter::addWhiteout(const std::string& path) {
  const std::string dir = dirName(path);
  addFile((dir.empty() ? "" : dir + "/") + ".wh." + baseName(path), "", 0644);
}

void LayerWriter::addOpaque(const std::string& directory) {
  addDirectory(directory);
  addFile(directory + "/.wh..wh..opq", "", 0644);
}

bool LayerWriter::addHostEntry(const fs::path& source, const std::string& path, const struct stat& st) {
  if (S_ISDIR(st.st_mode)) {
    addDirectory(path, st.st_mode & 07777, st.st_mtime);
    return true;
  }
  if (S_ISLNK(st.st_mode)) {
    std::error_code ec;
    const fs::path target = fs::read_symlink(source, ec);
    if (ec) return false;
    addSymlink(path, target.string());
    return true;
  }
  if (!S_ISREG(st.st_mode)) return false;
  std::ifstream in(source, std::ios::binary);
  if (!in) return false;
  // The size recorded is the one stat gave; a file that changed meanwhile is
  // cut or zero-padded to it.
  addFileFrom(
      path, static_cast<std::uint64_t>(st.st_size),
      [&](char* data, std::size_t n) {
        in.read(data, static_cast<std::streamsize>(n));
        const auto got = static_cast<std::size_t>(in ? n : in.gcount());
        if (got < n) std::memset(data + got, 0, n - got);
      },
      st.st_mode & 07777, st.st_mtime);
  return true;
}

LayerBlob LayerWriter::finish() {
  const int rc = archive_write_close(archive_);
  check(rc, archive_, writeFailed_, "the end of the tar");
  archive_write_free(archive_);
  archive_ = nullptr;
  ::close(pipe_);
  pipe_ = -1;
  const ProcessResult pigz = waitTimed(pigz_, std::chrono::steady_clock::now(), std::chrono::seconds(3600));
  pigz_ = -1;
  if (!pigz.ok()) {
    throw std::runtime_error("Failed to compress a layer with pigz: " + pigz.describe() + ": " +
                             tailOf(blobsDir_ / "pigz.log"));
  }
  fs::remove(blobsDir_ / "pigz.log");

  LayerBlob blob;
  auto hasher = *fetcher::Hasher::create("sha256");
  std::ifstream in(temporary_, std::ios::binary);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    hasher.update(buffer.data(), static_cast<std::size_t>(in.gcount()));
    blob.size += static_cast<std::uint64_t>(in.gcount());
  }
  blob.digest = hasher.finish();
  blob.diffId = diffId_.finish();
  blob.tarBytes = tarBytes_;
  blob.stats = stats_;
  fs::rename(temporary_, blobsDir_ / blob.digest.substr(7));
  return blob;
}

// ---- the image -------------------------------------------------------------------

std::string writeImage(const fs::path& layout, const std::vector<LayerBlob>& layers, const std::string& tag) {
  testing::OciLayout oci(layout);
  std::string diffIds, descriptors;
  for (const auto& layer : layers) {
    diffIds += (diffIds.empty() ? "\"" : ",\"") + layer.diffId + "\"";
    descriptors += std::string(descriptors.empty() ? "" : ",") +
                   "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" + layer.digest +
                   "\",\"size\":" + std::to_string(layer.size) + "}";
  }
  const std::string config =
      "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:"
      "/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"/bin/sh\"],\"WorkingDir\":\"/\"},"
      "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[" +
      diffIds + "]}}";
  testing::BuiltImage image;
  image.configDigest = oci.writeBlob(config);
  image.manifestJson =
      "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":"
      "{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" +
      image.configDigest + "\",\"size\":" + std::to_string(config.size()) + "},\"layers\":[" + descriptors + "]}";
  image.manifestDigest = oci.writeBlob(image.manifestJson);
  oci.tag(image, tag);
  return image.manifestDigest;
}

}  // namespace prov::bench::pull
