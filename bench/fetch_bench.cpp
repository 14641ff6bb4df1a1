// bench_fetch: one large blob from the local real registry, through the
// registry client (sha256 verified while it streams) and through curl.
//
//   build/bin/bench_fetch [--size-mib=1024] [--runs=5] [--dir=/tmp/bench-fetch] [--tls]
//
// --tls: the registry serves https with a test CA's certificate, which the
// client (HttpOptions::extraCaFile) and curl (--cacert) are given.
// Starts Debian's docker-registry on a free 127.0.0.1 port with its storage
// under --dir, uploads a blob of random bytes (monolithic upload with curl),
// then, --runs times and alternating which goes first, downloads it
//   - with RegistryClient::streamBlob into a sink that drops the bytes
//     (the client checks the size and the sha256 digest, as a pull does);
//   - with `curl -s -o /dev/null` on the same URL (no verification);
//   - with `curl -s URL | openssl dgst -sha256` (curl with the check a pull needs).
// Figures (MiB/s; median, min and max over the runs):
//   blob_mib_per_s, curl_mib_per_s, curl_openssl_sha256_mib_per_s,
//   ratio_vs_curl and ratio_vs_curl_openssl_sha256 (ratios of the medians).
// The last line printed is one JSON object ("tls" says which it was).

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "actors/actors.hpp"
#include "bench/options.hpp"
#include "bench/registry.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/registry.hpp"
#include "testkit/real_registry.hpp"

namespace {

namespace fs = std::filesystem;
using namespace prov;
using SteadyClock = std::chrono::steady_clock;

class NullSink : public fetcher::ByteSink {
 public:
  actors::Future<actors::Nothing> write(std::string_view chunk) override {
    bytes += chunk.size();
    return actors::Nothing{};
  }
  std::size_t bytes = 0;
};

// Random bytes into `path`; returns their digest.
std::string writeRandomBlob(const fs::path& path, std::size_t bytes) {
  auto hasher = *fetcher::Hasher::create("sha256");
  std::ofstream out(path, std::ios::binary);
  std::mt19937_64 random(42);
  std::vector<std::uint64_t> block(1 << 17);  // 1 MiB
  for (std::size_t done = 0; done < bytes; done += block.size() * 8) {
    for (auto& word : block) word = random();
    const std::size_t n = std::min(bytes - done, block.size() * 8);
    out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(n));
    hasher.update(block.data(), n);
  }
  return hasher.finish();
}

// POST an upload, PUT the file to its Location with the digest.
// curl's arguments before the rest: over https, the registry's CA, and
// HTTP/1.1 as the client speaks (curl would pick HTTP/2).
std::vector<std::string> curlArgs(const testing::RealRegistry& registry, std::vector<std::string> rest) {
  std::vector<std::string> argv = {"curl", "-s"};
  if (registry.url().rfind("https", 0) == 0) {
    argv.insert(argv.end(), {"--http1.1", "--cacert", registry.caFile().string()});
  }
  argv.insert(argv.end(), rest.begin(), rest.end());
  return argv;
}

bool upload(const testing::RealRegistry& registry, const fs::path& file, const std::string& digest) {
  auto started = testing::runCommand(
      curlArgs(registry, {"-i", "-X", "POST", registry.url() + "/v2/bench/blob/blobs/uploads/"}));
  const auto at = started.output.find("Location: ");
  if (started.status != 0 || at == std::string::npos) {
    std::fprintf(stderr, "error: could not start an upload: %s\n", started.output.c_str());
    return false;
  }
  std::string location = started.output.substr(at + 10, started.output.find('\r', at) - at - 10);
  if (location.rfind("http", 0) != 0) location = registry.url() + location;
  location += (location.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") + digest;
  auto put = testing::runCommand(curlArgs(registry, {"-f", "-X", "PUT", "-H", "Content-Type: application/octet-stream",
                                                     "--upload-file", file.string(), location}));
  if (put.status != 0) std::fprintf(stderr, "error: upload failed: %s\n", put.output.c_str());
  return put.status == 0;
}

double seconds(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

struct Summary {
  double median, min, max;
};

Summary summarize(const std::vector<double>& v) {
  return {bench::median(v), *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end())};
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  int runs = 5;
  std::size_t sizeMib = 1024;
  std::string dir = "/tmp/bench-fetch";
  bool tls = false;
  po::options_description options(
      "bench_fetch: a large blob from a local docker-registry, ours vs curl; last line is JSON");
  options.add_options()("runs", po::value<int>(&runs)->default_value(5), "downloads of each kind (median reported)")(
      "size-mib", po::value<std::size_t>(&sizeMib)->default_value(1024),
      "blob size in MiB")("dir", po::value<std::string>(&dir)->default_value(dir), "work directory (removed first)")(
      "tls", po::bool_switch(&tls),
      "the registry serves https (a test CA's certificate, which the client and curl are given)");
  po::variables_map vm;
  if (auto exit = bench::parseOptions(argc, argv, options, vm)) return *exit;
  if (runs < 1 || sizeMib < 1) {
    std::fprintf(stderr, "error: --runs and --size-mib must be at least 1\n");
    return 1;
  }

  auto registry = bench::freshRegistry(dir, tls);
  if (!registry) return 1;
  const std::size_t bytes = sizeMib << 20;
  const fs::path file = fs::path(dir) / "blob";
  const std::string digest = writeRandomBlob(file, bytes);
  if (!upload(*registry, file, digest)) return 1;
  fs::remove(file);
  std::printf("bench_fetch: %zu MiB blob %s at %s\n", sizeMib, digest.c_str(), registry->url().c_str());

  actors::Runtime runtime;
  fetcher::RegistryOptions ro;
  if (tls) ro.http.extraCaFile = registry->caFile().string();
  auto client = fetcher::RegistryClient::create(runtime, ro);
  if (client.isError()) {
    std::fprintf(stderr, "error: %s\n", client.error().message.c_str());
    return 1;
  }
  fetcher::Repository repository{*fetcher::parseUrl(registry->url() + "/"), registry->hostPort(), "bench/blob", {}};
  messages::Descriptor blob;
  blob.set_digest(digest);
  blob.set_size(static_cast<std::int64_t>(bytes));
  const std::string url = registry->url() + "/v2/bench/blob/blobs/" + digest;

  auto ours = [&]() -> double {
    auto sink = std::make_shared<NullSink>();
    const auto start = SteadyClock::now();
    auto done = (*client)->streamBlob(repository, blob, sink);
    done.waitFor(std::chrono::minutes(10));
    const double s = seconds(start);
    if (!done.isReady() || sink->bytes != bytes) {
      std::fprintf(stderr, "error: %s\n", done.isFailed() ? done.failure().message.c_str() : "download did not finish");
      std::exit(1);
    }
    return s;
  };
  auto curl = [&]() -> double {
    const auto start = SteadyClock::now();
    auto r = testing::runCommand(curlArgs(*registry, {"-f", "-o", "/dev/null", url}));
    const double s = seconds(start);
    if (r.status != 0) {
      std::fprintf(stderr, "error: curl failed: %s\n", r.output.c_str());
      std::exit(1);
    }
    return s;
  };

  // curl with the same check a pull makes: its output through openssl dgst -sha256.
  auto curlVerified = [&]() -> double {
    const auto start = SteadyClock::now();
    const std::string ca = tls ? " --http1.1 --cacert '" + registry->caFile().string() + "'" : "";
    auto r = testing::runCommand({"sh", "-c", "curl -s -f" + ca + " '" + url + "' | openssl dgst -sha256"});
    const double s = seconds(start);
    if (r.status != 0 || r.output.find(digest.substr(7)) == std::string::npos) {
      std::fprintf(stderr, "error: curl | openssl dgst failed: %s\n", r.output.c_str());
      std::exit(1);
    }
    return s;
  };

  ours();  // warm the page cache and the connection pool alike for both
  curl();
  std::vector<double> oursRate, curlRate, verifiedRate;
  for (int i = 0; i < runs; ++i) {
    double a, b, v;
    if (i % 2 == 0) {
      a = ours();
      b = curl();
      v = curlVerified();
    } else {
      v = curlVerified();
      b = curl();
      a = ours();
    }
    oursRate.push_back(static_cast<double>(sizeMib) / a);
    curlRate.push_back(static_cast<double>(sizeMib) / b);
    verifiedRate.push_back(static_cast<double>(sizeMib) / v);
    std::printf("run %d: provisioner %.1f MiB/s, curl %.1f MiB/s, curl | openssl sha256 %.1f MiB/s\n", i + 1,
                oursRate.back(), curlRate.back(), verifiedRate.back());
  }
  const Summary o = summarize(oursRate), c = summarize(curlRate), v = summarize(verifiedRate);
  std::printf(
      "{\"blob_mib\":%zu,\"tls\":%s,\"runs\":%d,\"blob_mib_per_s\":%.1f,\"blob_min\":%.1f,\"blob_max\":%.1f,"
      "\"curl_mib_per_s\":%.1f,\"curl_min\":%.1f,\"curl_max\":%.1f,"
      "\"curl_openssl_sha256_mib_per_s\":%.1f,\"ratio_vs_curl\":%.3f,\"ratio_vs_curl_openssl_sha256\":%.3f}\n",
      sizeMib, tls ? "true" : "false", runs, o.median, o.min, o.max, c.median, c.min, c.max, v.median,
      o.median / c.median, o.median / v.median);
  registry.reset();
  fs::remove_all(dir);
  return 0;
}
