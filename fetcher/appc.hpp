#pragma once

// AppC images: names, labels, manifests and simple discovery.
//
// - An image is asked for by name and labels. The labels the discovery
//   template uses get defaults (`version` "latest", `os` "linux", `arch`
//   this host's in AppC's words: amd64, aarch64, ...), so `busybox` and
//   `busybox,version=latest,os=linux,arch=amd64` are one image.
// - Simple discovery: the ACI of an image is at
//   `{prefix}{name}-{version}-{os}-{arch}.aci`. The prefix is an http:// or
//   https:// URL (fetched with the project's HTTP client: the same TLS,
//   timeouts and retries as registries; plain http is allowed because the
//   operator chose an http:// prefix) or a local directory ("/...").
// - Manifests are validated as the AppC spec says: acKind "ImageManifest",
//   an acVersion, the name an AC identifier, label names AC names without
//   repeats, app.user and app.group present when there is an app, a
//   relative-free workingDirectory, dependencies with AC identifier names and
//   well-formed image ids. Errors are InvalidArgument naming the field.

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "actors/future.hpp"
#include "fetcher/http.hpp"
#include "fetcher/retry.hpp"
#include "messages/appc.pb.h"
#include "messages/image.pb.h"

namespace prov::actors {
class Runtime;
}

namespace prov::fetcher {

// An AC identifier ("example.com/app-1"): lowercase letters and digits
// separated by single "-._~/"; `what` names it in the error.
Try<Nothing> validateAcIdentifier(std::string_view name, std::string_view what);
// An AC name (a label name): lowercase letters and digits separated by "-".
Try<Nothing> validateAcName(std::string_view name, std::string_view what);
// "sha512-" and 128 lowercase hex digits.
Try<Nothing> validateAppcImageId(std::string_view id, std::string_view what);

// This host's architecture as AppC names it ("amd64", "aarch64", ...).
std::string hostAppcArch();

// The image with `version`, `os` and `arch` filled in where absent; the
// name, labels and id validated.
Try<messages::AppcImage> withDefaultLabels(const messages::AppcImage& image);

// "appc:NAME,arch=..,os=..,version=.." (labels sorted): the cache key of an
// image with its defaults filled in.
std::string appcKey(const messages::AppcImage& image);

// "{name}-{version}-{os}-{arch}.aci" for an image with its defaults filled in.
std::string simpleDiscoveryName(const messages::AppcImage& image);

// Parses and validates an ImageManifest.
Try<messages::AppcManifest> parseAppcManifest(std::string_view text, std::string_view what);

// The runtime config an ImageManifest gives: exec as the entrypoint,
// environment, working directory, "user:group".
messages::ImageConfig appcRuntimeConfig(const messages::AppcManifest& manifest);

// The image a dependency asks for.
messages::AppcImage dependencyImage(const messages::AppcManifest::Dependency& dependency);

struct AppcFetchOptions {
  std::string prefix = "http://";  // http://, https:// or a local directory
  HttpOptions http;
  RetryPolicy retry;
  // A download longer than this is refused (ResourceExhausted), and removed.
  std::uint64_t maxBytes = 64ull << 30;
};

// Where an image's ACI came from: a file to read, and whether it is a
// download of ours (which the caller removes when done).
struct AciFile {
  std::string path;
  std::string source;  // the URL or the local path, for messages
  bool downloaded = false;
};

class AppcFetcher {
 public:
  // InvalidArgument when the prefix is none of http://, https:// or "/...".
  static Try<std::unique_ptr<AppcFetcher>> create(actors::Runtime& runtime, AppcFetchOptions options);
  ~AppcFetcher();

  // The ACI of `image` (defaults filled in): a local prefix gives the file
  // where it is (NotFound when missing); a URL prefix downloads it into a new
  // file in `dir`, with retries on Unavailable and Timeout (404: NotFound).
  // On failure nothing is left in `dir`. Discarding stops the download.
  actors::Future<AciFile> fetch(const messages::AppcImage& image, const std::string& dir);

 private:
  struct Impl;
  explicit AppcFetcher(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace prov::fetcher
