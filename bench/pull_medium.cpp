// The medium workload: five layers of real trees from this machine's /usr.
//
//   L1 ~150 MB  /usr/lib/x86_64-linux-gnu/lib[a-f]*, python3.11, zoneinfo, busybox
//   L2 ~110 MB  /usr/include (at most 16 MB from each top-level entry)
//   L3  ~80 MB  /usr/share/locale/[a-m]*, /usr/share/i18n
//   L4  ~45 MB  50 file whiteouts and 2 directory whiteouts of L1/L2 entries,
//               a modified L1 file, man3 and doc, 967 hardlinks
//   L5  ~20 MB  2 opaque directories (usr/include/linux, python3.11/email)
//               with new files, absolute, relative, dangling and directory
//               symlinks, /usr/share/perl
//
// Each source is walked in sorted order and taken until its byte cap (files
// over 8 MiB are skipped); a layer whose sources fall short is padded with
// generated text files, so the image stays ~400 MB on any Debian.

#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <limits>

#include "bench/pull_process.hpp"
#include "bench/pull_workloads.hpp"

namespace prov::bench::pull {

namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kMB = 1000 * 1000;
constexpr std::uint64_t kMaxFileBytes = 8ULL << 20;
constexpr std::uint64_t kUnlimited = std::numeric_limits<std::uint64_t>::max();
constexpr int kFileWhiteouts = 50;
constexpr int kHardlinks = 967;

struct TreeSource {
  const char* host;        // a directory or a file
  const char* topFilter;   // fnmatch pattern for the names right below `host`; "" takes all
  std::uint64_t cap;       // file bytes taken from this source
  std::uint64_t childCap;  // file bytes per name right below `host`; 0: no cap
};

// What went into a layer, for the layers above to refer to.
struct Record {
  std::vector<std::string> files;
  std::vector<std::string> directories;
};

bool under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

std::size_t depth(const std::string& path) {
  return static_cast<std::size_t>(std::count(path.begin(), path.end(), '/')) + 1;
}

std::vector<std::string> sortedNames(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

class TreeCopier {
 public:
  TreeCopier(LayerWriter& layer, Record& record) : layer_(layer), record_(record) {}

  void copy(const TreeSource& source) {
    const fs::path host = source.host;
    const std::string path = host.relative_path().string();
    sourceLeft_ = source.cap;
    sourceFull_ = false;
    childLeft_ = kUnlimited;
    struct stat st {};
    if (::lstat(host.c_str(), &st) != 0) {
      std::printf("bench_pull: %s is missing here; padding makes up for it\n", source.host);
      return;
    }
    if (!S_ISDIR(st.st_mode)) {
      visit(host, path);
      return;
    }
    layer_.addHostEntry(host, path, st);
    record_.directories.push_back(path);
    for (const auto& name : sortedNames(host)) {
      if (*source.topFilter && ::fnmatch(source.topFilter, name.c_str(), 0) != 0) continue;
      childLeft_ = source.childCap ? source.childCap : kUnlimited;
      visit(host / name, path + "/" + name);
      if (sourceFull_) break;
    }
  }

 private:
  // False when a budget ran out (stop walking this child).
  bool visit(const fs::path& host, const std::string& path) {
    struct stat st {};
    if (::lstat(host.c_str(), &st) != 0) return true;
    if (S_ISDIR(st.st_mode)) {
      checkInterrupted();
      layer_.addHostEntry(host, path, st);
      record_.directories.push_back(path);
      for (const auto& name : sortedNames(host)) {
        if (!visit(host / name, path + "/" + name)) return false;
      }
      return true;
    }
    if (S_ISREG(st.st_mode)) {
      const auto size = static_cast<std::uint64_t>(st.st_size);
      if (size > kMaxFileBytes) return true;
      if (size > sourceLeft_) sourceFull_ = true;
      if (size > sourceLeft_ || size > childLeft_) return false;
      if (!layer_.addHostEntry(host, path, st)) return true;
      sourceLeft_ -= size;
      childLeft_ -= size;
      record_.files.push_back(path);
      return true;
    }
    layer_.addHostEntry(host, path, st);
    return true;
  }

  LayerWriter& layer_;
  Record& record_;
  std::uint64_t sourceLeft_ = 0, childLeft_ = 0;
  bool sourceFull_ = false;
};

void copySources(LayerWriter& layer, Record& record, const std::vector<TreeSource>& sources) {
  TreeCopier copier(layer, record);
  for (const auto& source : sources) copier.copy(source);
}

// Generated text files until the layer holds `target` file bytes.
void pad(LayerWriter& layer, Record& record, int index, std::uint64_t target) {
  Prng prng(0x706164ULL + static_cast<std::uint64_t>(index));
  char name[64];
  for (int i = 0; layer.stats().fileBytes < target; ++i) {
    checkInterrupted();
    std::snprintf(name, sizeof name, "usr/share/bench-padding/l%d/d%03d/f%05d.txt", index, i / 200, i);
    const std::uint64_t size = std::min<std::uint64_t>(8192 + prng.below(57345), target - layer.stats().fileBytes);
    layer.addFileFrom(name, size, [&](char* data, std::size_t n) { prng.fillText(data, n); });
    record.files.emplace_back(name);
  }
}

std::string generatedText(std::uint64_t seed, std::size_t size, const std::string& head) {
  std::string text(size, ' ');
  Prng(seed).fillText(text.data(), text.size());
  return head + text;
}

// The first directory of `record` `levels` deep below `parent` that is not
// under any of `avoid`; falls back to any directory that deep.
std::string pickDirectory(const Record& record, const std::string& preferred, const std::string& parent,
                          const std::vector<std::string>& avoid) {
  auto usable = [&](const std::string& d) {
    return std::none_of(avoid.begin(), avoid.end(), [&](const std::string& a) { return under(d, a) || under(a, d); });
  };
  if (std::find(record.directories.begin(), record.directories.end(), preferred) != record.directories.end() &&
      usable(preferred)) {
    return preferred;
  }
  for (const auto& d : record.directories) {
    if (under(d, parent) && depth(d) == depth(parent) + 1 && usable(d)) return d;
  }
  for (const auto& d : record.directories) {
    if (depth(d) >= 3 && usable(d)) return d;
  }
  return "";
}

struct LowerPicks {
  std::string opaqueInclude, opaqueLib;  // made opaque in L5
  std::string goneInclude, goneLib;      // directories whited out in L4
  std::string modified;                  // an L1 file L4 rewrites
};

LowerPicks pickLowerEntries(const Record& l1, const Record& l2) {
  LowerPicks p;
  p.opaqueInclude = pickDirectory(l2, "usr/include/linux", "usr/include", {});
  p.opaqueLib = pickDirectory(l1, "usr/lib/python3.11/email", "usr/lib/python3.11", {p.opaqueInclude});
  p.goneInclude = pickDirectory(l2, "", "usr/include", {p.opaqueInclude, p.opaqueLib});
  p.goneLib = pickDirectory(l1, "", "usr/lib/python3.11", {p.opaqueInclude, p.opaqueLib, p.goneInclude});
  const std::vector<std::string> avoid = {p.opaqueInclude, p.opaqueLib, p.goneInclude, p.goneLib};
  auto free = [&](const std::string& f) {
    return std::none_of(avoid.begin(), avoid.end(), [&](const std::string& a) { return !a.empty() && under(f, a); });
  };
  const auto os = std::find(l1.files.begin(), l1.files.end(), "usr/lib/python3.11/os.py");
  if (os != l1.files.end() && free(*os)) {
    p.modified = *os;
  } else {
    for (std::size_t i = l1.files.size() / 2; i < l1.files.size() && p.modified.empty(); ++i) {
      if (free(l1.files[i])) p.modified = l1.files[i];
    }
  }
  return p;
}

void addWhiteouts(LayerWriter& layer, const Record& l1, const Record& l2, const LowerPicks& p) {
  std::vector<std::string> candidates;
  for (const Record* r : {&l1, &l2}) {
    for (const auto& f : r->files) {
      bool taken = f == p.modified;
      for (const auto& d : {p.opaqueInclude, p.opaqueLib, p.goneInclude, p.goneLib})
        taken = taken || (!d.empty() && under(f, d));
      if (!taken) candidates.push_back(f);
    }
  }
  const std::size_t n = candidates.size();
  for (int i = 0; i < kFileWhiteouts && static_cast<std::size_t>(i) < n; ++i) {
    layer.addWhiteout(candidates[(static_cast<std::size_t>(i) * n + n / 2) / kFileWhiteouts]);
  }
  for (const auto& d : {p.goneInclude, p.goneLib}) {
    if (!d.empty()) layer.addWhiteout(d);
  }
  if (!p.modified.empty()) {
    layer.addFile(p.modified, generatedText(4, 8192, "# modified by layer 4 of bench_pull's medium image\n"));
  }
}

void addHardlinks(LayerWriter& layer, const Record& l4) {
  const std::size_t n = l4.files.size();
  const std::size_t count = std::min<std::size_t>(kHardlinks, n);
  char name[64];
  for (std::size_t i = 0; i < count; ++i) {
    std::snprintf(name, sizeof name, "usr/share/bench-hardlinks/h%04zu", i);
    layer.addHardlink(name, l4.files[i * n / count]);
  }
}

void addTopLayerShapes(LayerWriter& layer, const Record& l1, const LowerPicks& p) {
  for (const auto& dir : {p.opaqueInclude, p.opaqueLib}) {
    if (dir.empty()) continue;
    layer.addOpaque(dir);
    for (int i = 0; i < 5; ++i) {
      layer.addFile(dir + "/bench-opaque-" + std::to_string(i) + ".txt",
                    generatedText(50 + static_cast<std::uint64_t>(i), 2048, "replaces the lower directory\n"));
    }
  }
  layer.addSymlink("usr/local/bin/bench-busybox", "/usr/bin/busybox");            // absolute
  layer.addSymlink("usr/local/bin/bench-os.py", "../../lib/python3.11/os.py");    // relative
  layer.addSymlink("usr/local/bin/bench-dangling", "../../nonexistent/nowhere");  // dangling
  layer.addSymlink("usr/local/bin/bench-dangling-abs", "/nonexistent/nowhere");   // dangling
  layer.addSymlink("usr/local/share-perl", "../share/perl");                      // directory
  layer.addSymlink("usr/local/include-all", "/usr/include");                      // directory
  const std::size_t n = l1.files.size();
  char name[64];
  for (std::size_t i = 0; i < 100 && i < n; ++i) {
    std::snprintf(name, sizeof name, "usr/local/lib/bench-links/s%03zu", i);
    layer.addSymlink(name, "../../../" + l1.files[i * n / 100].substr(4));  // drop "usr/"
  }
}

}  // namespace

std::vector<LayerBlob> buildMedium(const fs::path& blobs) {
  std::vector<LayerBlob> layers;
  Record l1, l2, l3, l4, l5;
  {
    LayerWriter layer(blobs);
    copySources(layer, l1,
                {{"/usr/lib/x86_64-linux-gnu", "lib[a-f]*", 90 * kMB, 0},
                 {"/usr/lib/python3.11", "", 55 * kMB, 0},
                 {"/usr/share/zoneinfo", "", 5 * kMB, 0},
                 {"/usr/bin/busybox", "", 4 * kMB, 0}});
    pad(layer, l1, 1, 150 * kMB);
    layers.push_back(layer.finish());
  }
  {
    LayerWriter layer(blobs);
    copySources(layer, l2, {{"/usr/include", "", 110 * kMB, 16 * kMB}});
    pad(layer, l2, 2, 110 * kMB);
    layers.push_back(layer.finish());
  }
  {
    LayerWriter layer(blobs);
    copySources(layer, l3, {{"/usr/share/locale", "[a-m]*", 65 * kMB, 0}, {"/usr/share/i18n", "", 15 * kMB, 0}});
    pad(layer, l3, 3, 80 * kMB);
    layers.push_back(layer.finish());
  }
  const LowerPicks picks = pickLowerEntries(l1, l2);
  {
    LayerWriter layer(blobs);
    addWhiteouts(layer, l1, l2, picks);
    copySources(layer, l4, {{"/usr/share/man/man3", "", 8 * kMB, 0}, {"/usr/share/doc", "", 37 * kMB, 0}});
    pad(layer, l4, 4, 45 * kMB);
    addHardlinks(layer, l4);
    layers.push_back(layer.finish());
  }
  {
    LayerWriter layer(blobs);
    addTopLayerShapes(layer, l1, picks);
    copySources(layer, l5, {{"/usr/share/perl", "", 20 * kMB, 0}});
    pad(layer, l5, 5, 20 * kMB);
    layers.push_back(layer.finish());
  }
  std::printf("bench_pull: medium: opaque %s and %s; directories whited out: %s and %s; modified %s\n",
              picks.opaqueInclude.c_str(), picks.opaqueLib.c_str(), picks.goneInclude.c_str(), picks.goneLib.c_str(),
              picks.modified.c_str());
  return layers;
}

}  // namespace prov::bench::pull
