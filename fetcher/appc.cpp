#include "fetcher/appc.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>

#include <rapidjson/document.h>

#include "actors/async.hpp"
#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include "actors/random.hpp"
#include "actors/runtime.hpp"
#include "fetcher/json.hpp"

namespace prov::fetcher {

namespace {

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// Alphanumeric runs separated by single characters of `separators`.
bool separatedRuns(std::string_view name, std::string_view separators) {
  if (name.empty() || !isLowerAlnum(name.front()) || !isLowerAlnum(name.back())) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (isLowerAlnum(c)) continue;
    if (separators.find(c) == std::string_view::npos || !isLowerAlnum(name[i + 1])) return false;
  }
  return true;
}

Error invalid(std::string_view what, const std::string& why) {
  return Error(ErrorKind::InvalidArgument, std::string(what) + ": " + why);
}

using Value = rapidjson::Value;

Try<std::string> stringField(const Value& object, const char* name, std::string_view what, bool required) {
  return json::string(object, name, required, [what](const std::string& why) { return invalid(what, why); });
}

// [{"name": N, "value": V}, ...] into a map; names checked with `check`.
template <typename Check>
Try<std::map<std::string, std::string>> namedValues(const Value& object, const char* field, std::string_view what,
                                                    Check check, std::vector<std::string>* order = nullptr) {
  std::map<std::string, std::string> out;
  if (!object.HasMember(field) || object[field].IsNull()) return out;
  const Value& list = object[field];
  if (!list.IsArray()) return invalid(what, std::string("'") + field + "' is not an array");
  for (const auto& item : list.GetArray()) {
    if (!item.IsObject()) return invalid(what, std::string("an entry of '") + field + "' is not an object");
    auto name = stringField(item, "name", what, true);
    if (name.isError()) return name.error();
    auto value = stringField(item, "value", what, true);
    if (value.isError()) return value.error();
    auto checked = check(*name);
    if (checked.isError()) return checked.error();
    if (!out.emplace(*name, *value).second) {
      return invalid(what, std::string("'") + field + "' names '" + *name + "' twice");
    }
    if (order) order->push_back(*name);
  }
  return out;
}

}  // namespace

Try<Nothing> validateAcIdentifier(std::string_view name, std::string_view what) {
  if (!separatedRuns(name, "-._~/")) {
    return invalid(what, "'" + std::string(name) +
                             "' is not an AC identifier (lowercase letters and digits, separated by one of -._~/)");
  }
  return Nothing{};
}

Try<Nothing> validateAcName(std::string_view name, std::string_view what) {
  if (!separatedRuns(name, "-")) {
    return invalid(what,
                   "'" + std::string(name) + "' is not an AC name (lowercase letters and digits, separated by -)");
  }
  return Nothing{};
}

Try<Nothing> validateAppcImageId(std::string_view id, std::string_view what) {
  constexpr std::string_view kPrefix = "sha512-";
  const bool ok = id.starts_with(kPrefix) && id.size() == kPrefix.size() + 128 &&
                  std::all_of(id.begin() + kPrefix.size(), id.end(),
                              [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  if (!ok) return invalid(what, "'" + std::string(id) + "' is not an image id (sha512- and 128 lowercase hex digits)");
  return Nothing{};
}

std::string hostAppcArch() {
  struct utsname u {};
  ::uname(&u);
  const std::string machine = u.machine;
  if (machine == "x86_64") return "amd64";
  if (machine == "i386" || machine == "i486" || machine == "i586" || machine == "i686") return "i386";
  return machine;  // aarch64, ppc64le, s390x, armv7l are AppC's names too
}

Try<messages::AppcImage> withDefaultLabels(const messages::AppcImage& image) {
  auto name = validateAcIdentifier(image.name(), "Invalid AppC image name");
  if (name.isError()) return name.error();
  for (const auto& [label, value] : image.labels()) {
    auto checked = validateAcName(label, "Invalid label of AppC image '" + image.name() + "'");
    if (checked.isError()) return checked.error();
    const bool plain = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '+' || c == '-';
    });
    if (!plain) {
      return invalid("Invalid label of AppC image '" + image.name() + "'",
                     "the value of '" + label + "' ('" + value + "') must be letters, digits and . _ + -");
    }
  }
  if (!image.id().empty()) {
    auto id = validateAppcImageId(image.id(), "Invalid id of AppC image '" + image.name() + "'");
    if (id.isError()) return id.error();
  }
  messages::AppcImage out = image;
  auto& labels = *out.mutable_labels();
  labels.insert({"version", "latest"});
  labels.insert({"os", "linux"});
  labels.insert({"arch", hostAppcArch()});
  return out;
}

std::string appcKey(const messages::AppcImage& image) {
  std::string key = "appc:" + image.name();
  const std::map<std::string, std::string> sorted(image.labels().begin(), image.labels().end());
  for (const auto& [label, value] : sorted) key += "," + label + "=" + value;
  return key;
}

std::string simpleDiscoveryName(const messages::AppcImage& image) {
  auto label = [&](const char* name) {
    auto it = image.labels().find(name);
    return it == image.labels().end() ? std::string() : it->second;
  };
  return image.name() + "-" + label("version") + "-" + label("os") + "-" + label("arch") + ".aci";
}

namespace {

// The manifest's "app": exec, user and group, working directory, environment.
Try<Nothing> parseApp(const Value& doc, std::string_view what, messages::AppcManifest& manifest) {
  if (!doc.HasMember("app") || doc["app"].IsNull()) return Nothing{};
  const Value& app = doc["app"];
  if (!app.IsObject()) return invalid(what, "'app' is not an object");
  auto* out = manifest.mutable_app();
  if (app.HasMember("exec") && !app["exec"].IsNull()) {
    if (!app["exec"].IsArray()) return invalid(what, "'app.exec' is not an array");
    for (const auto& arg : app["exec"].GetArray()) {
      if (!arg.IsString()) return invalid(what, "'app.exec' has an element that is not a string");
      out->add_exec(arg.GetString(), arg.GetStringLength());
    }
    if (out->exec_size() > 0 && (out->exec(0).empty() || out->exec(0).front() != '/')) {
      return invalid(what, "'app.exec' must start with an absolute path, not '" + out->exec(0) + "'");
    }
  }
  auto user = stringField(app, "user", what, true);
  if (user.isError()) return user.error();
  auto group = stringField(app, "group", what, true);
  if (group.isError()) return group.error();
  if (user->empty() || group->empty()) return invalid(what, "'app.user' and 'app.group' must not be empty");
  out->set_user(*user);
  out->set_group(*group);
  auto dir = stringField(app, "workingDirectory", what, false);
  if (dir.isError()) return dir.error();
  if (!dir->empty() && dir->front() != '/') {
    return invalid(what, "'app.workingDirectory' is not an absolute path: '" + *dir + "'");
  }
  out->set_working_directory(*dir);
  std::vector<std::string> order;
  auto anyName = [](const std::string&) -> Try<Nothing> { return Nothing{}; };
  auto environment = namedValues(app, "environment", what, anyName, &order);
  if (environment.isError()) return environment.error();
  for (const auto& variable : order) {
    if (variable.empty() || variable.find('=') != std::string::npos) {
      return invalid(what, "'app.environment' has an invalid name '" + variable + "'");
    }
    out->add_environment(variable + "=" + environment->at(variable));
  }
  return Nothing{};
}

// The manifest's "dependencies", each an AC identifier with an optional id
// and labels.
Try<Nothing> parseDependencies(const Value& doc, std::string_view what, messages::AppcManifest& manifest) {
  if (!doc.HasMember("dependencies") || doc["dependencies"].IsNull()) return Nothing{};
  if (!doc["dependencies"].IsArray()) return invalid(what, "'dependencies' is not an array");
  auto acName = [&](const std::string& label) { return validateAcName(label, what); };
  for (const auto& item : doc["dependencies"].GetArray()) {
    if (!item.IsObject()) return invalid(what, "a dependency is not an object");
    auto* dependency = manifest.add_dependencies();
    auto imageName = stringField(item, "imageName", what, true);
    if (imageName.isError()) return imageName.error();
    if (auto valid = validateAcIdentifier(*imageName, what); valid.isError()) return valid.error();
    dependency->set_image_name(*imageName);
    auto imageId = stringField(item, "imageID", what, false);
    if (imageId.isError()) return imageId.error();
    if (!imageId->empty()) {
      if (auto valid = validateAppcImageId(*imageId, what); valid.isError()) return valid.error();
    }
    dependency->set_image_id(*imageId);
    auto depLabels = namedValues(item, "labels", what, acName);
    if (depLabels.isError()) return depLabels.error();
    dependency->mutable_labels()->insert(depLabels->begin(), depLabels->end());
  }
  return Nothing{};
}

}  // namespace

Try<messages::AppcManifest> parseAppcManifest(std::string_view text, std::string_view what) {
  rapidjson::Document doc;
  auto parsed = json::parse(
      doc, text, [what](const std::string& why) { return invalid(what, "the manifest is not a JSON object: " + why); });
  if (parsed.isError()) return parsed.error();
  if (!doc.IsObject()) return invalid(what, "the manifest is not a JSON object");
  if (auto repeated = json::repeatedKey(doc, true); !repeated.empty()) {
    return invalid(what, "the manifest has the key '" + repeated + "' twice in one object");
  }
  messages::AppcManifest manifest;

  auto kind = stringField(doc, "acKind", what, true);
  if (kind.isError()) return kind.error();
  if (*kind != "ImageManifest") return invalid(what, "acKind is '" + *kind + "', not 'ImageManifest'");
  manifest.set_ac_kind(*kind);
  auto version = stringField(doc, "acVersion", what, true);
  if (version.isError()) return version.error();
  if (version->empty()) return invalid(what, "acVersion is empty");
  manifest.set_ac_version(*version);
  auto name = stringField(doc, "name", what, true);
  if (name.isError()) return name.error();
  if (auto valid = validateAcIdentifier(*name, what); valid.isError()) return valid.error();
  manifest.set_name(*name);
  auto acName = [&](const std::string& label) { return validateAcName(label, what); };
  auto labels = namedValues(doc, "labels", what, acName);
  if (labels.isError()) return labels.error();
  manifest.mutable_labels()->insert(labels->begin(), labels->end());

  if (auto app = parseApp(doc, what, manifest); app.isError()) return app.error();
  if (auto dependencies = parseDependencies(doc, what, manifest); dependencies.isError()) return dependencies.error();
  return manifest;
}

messages::ImageConfig appcRuntimeConfig(const messages::AppcManifest& manifest) {
  messages::ImageConfig config;
  if (auto it = manifest.labels().find("os"); it != manifest.labels().end()) config.set_os(it->second);
  if (auto it = manifest.labels().find("arch"); it != manifest.labels().end()) config.set_architecture(it->second);
  config.mutable_labels()->insert(manifest.labels().begin(), manifest.labels().end());
  if (!manifest.has_app()) return config;
  const auto& app = manifest.app();
  config.mutable_entrypoint()->CopyFrom(app.exec());
  config.mutable_env()->CopyFrom(app.environment());
  config.set_working_dir(app.working_directory());
  config.set_user(app.user() + ":" + app.group());
  return config;
}

messages::AppcImage dependencyImage(const messages::AppcManifest::Dependency& dependency) {
  messages::AppcImage image;
  image.set_name(dependency.image_name());
  image.set_id(dependency.image_id());
  image.mutable_labels()->insert(dependency.labels().begin(), dependency.labels().end());
  return image;
}

// ---- fetching ----------------------------------------------------------------

namespace {

// Writes a body into a file on the blocking pool; a retried attempt starts
// the file over.
class FileSink final : public BodySink {
 public:
  FileSink(actors::Runtime& runtime, std::shared_ptr<actors::fs::Fd> fd, std::uint64_t maxBytes, std::string what)
      : runtime_(runtime), fd_(std::move(fd)), maxBytes_(maxBytes), what_(std::move(what)) {}

  Try<Nothing> start(const HttpResponse& head) override {
    offset_ = 0;
    const std::string length = head.header("content-length");
    if (!length.empty() && length.size() < 20 && length.find_first_not_of("0123456789") == std::string::npos &&
        std::stoull(length) > maxBytes_) {
      return tooLarge();
    }
    if (actors::fs::disk().ftruncate(fd_->get(), 0) != 0)
      return Error(ErrorKind::IO, std::string("Failed to truncate the download: ") + std::strerror(errno));
    return Nothing{};
  }

  actors::Future<Nothing> write(std::string_view chunk) override {
    if (static_cast<std::uint64_t>(offset_) + chunk.size() > maxBytes_) return tooLarge();
    const off_t at = offset_;
    offset_ += static_cast<off_t>(chunk.size());
    return actors::async(runtime_, [fd = fd_, chunk, at]() -> Try<Nothing> {
      std::size_t done = 0;
      while (done < chunk.size()) {
        const ssize_t n = actors::fs::disk().pwrite(fd->get(), chunk.data() + done, chunk.size() - done,
                                                    at + static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return Error(ErrorKind::IO, std::string("Failed to write the download: ") + std::strerror(errno));
        done += static_cast<std::size_t>(n);
      }
      return Nothing{};
    });
  }

 private:
  Error tooLarge() const {
    return Error(ErrorKind::ResourceExhausted, what_ + ": it is larger than " + std::to_string(maxBytes_) +
                                                   " bytes (the layer size limit, --max_layer_bytes)");
  }

  actors::Runtime& runtime_;
  std::shared_ptr<actors::fs::Fd> fd_;
  const std::uint64_t maxBytes_;
  const std::string what_;
  off_t offset_ = 0;
};

Error statusError(const std::string& what, int status) {
  const std::string code = " (HTTP " + std::to_string(status) + ")";
  if (status == 404) return Error(ErrorKind::NotFound, what + ": not found" + code);
  if (status == 401) return Error(ErrorKind::Unauthorized, what + ": authentication required" + code);
  if (status == 403) return Error(ErrorKind::Forbidden, what + ": access denied" + code);
  if (status == 429 || status >= 500) return Error(ErrorKind::Unavailable, what + ": the server failed" + code);
  return Error(ErrorKind::InvalidArgument, what + ": the server refused the request" + code);
}

}  // namespace

struct AppcFetcher::Impl {
  actors::Runtime& runtime;
  AppcFetchOptions options;
  std::shared_ptr<HttpClient> http;  // null for a local prefix
};

AppcFetcher::AppcFetcher(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
AppcFetcher::~AppcFetcher() = default;

Try<std::unique_ptr<AppcFetcher>> AppcFetcher::create(actors::Runtime& runtime, AppcFetchOptions options) {
  const std::string& prefix = options.prefix;
  auto impl = std::make_shared<Impl>(Impl{runtime, options, nullptr});
  if (prefix.starts_with("http://") || prefix.starts_with("https://")) {
    HttpOptions http = options.http;
    // The operator chose the scheme with the prefix.
    if (prefix.starts_with("http://")) http.allowPlainHttp = [](const std::string&, int) { return true; };
    auto client = HttpClient::create(runtime, std::move(http));
    if (client.isError()) return client.error();
    impl->http = *client;
  } else if (!prefix.starts_with("/")) {
    return invalid("Invalid --appc_simple_discovery_uri_prefix",
                   "'" + prefix + "' is neither an http:// or https:// URL nor an absolute directory");
  }
  return std::unique_ptr<AppcFetcher>(new AppcFetcher(std::move(impl)));
}

actors::Future<AciFile> AppcFetcher::fetch(const messages::AppcImage& image, const std::string& dir) {
  const std::string source = impl_->options.prefix + simpleDiscoveryName(image);
  const std::string what = "Failed to fetch AppC image '" + image.name() + "' from '" + source + "'";
  if (!impl_->http) {
    return actors::async(impl_->runtime, [source, what]() -> Try<AciFile> {
      struct stat st {};
      if (::stat(source.c_str(), &st) != 0) {
        return Error(errno == ENOENT ? ErrorKind::NotFound : ErrorKind::IO, what + ": " + std::strerror(errno));
      }
      if (!S_ISREG(st.st_mode)) return Error(ErrorKind::InvalidArgument, what + ": it is not a regular file");
      return AciFile{source, source, false};
    });
  }
  auto url = parseUrl(source);
  if (url.isError()) return url.error().withContext(what);
  const std::string path = dir + "/download-" + actors::randomName() + ".aci";
  auto fd = std::make_shared<actors::fs::Fd>(
      actors::fs::disk().openat(AT_FDCWD, path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd->valid()) {
    return Error(ErrorKind::IO, what + ": failed to create '" + path + "': " + std::strerror(errno));
  }
  auto impl = impl_;
  const std::string shown = url->toString().substr(0, url->toString().find('?'));
  const std::string message = "Failed to fetch AppC image '" + image.name() + "' from '" + shown + "'";
  auto sink = std::make_shared<FileSink>(impl_->runtime, fd, impl_->options.maxBytes, message);
  HttpRequest request;
  request.url = *url;
  request.maxBody = 0;
  actors::Future<HttpResponse> fetched = retry<HttpResponse>(
      impl->runtime.clock(), impl->options.retry,
      [impl, request, sink, message](int) {
        return impl->http->stream(request, sink).then([message](const HttpResponse& r) -> actors::Future<HttpResponse> {
          if (r.status >= 200 && r.status < 300) return r;
          return statusError(message, r.status);
        });
      },
      [message](const actors::Future<HttpResponse>& failed) {
        const Error& error = failed.failure();
        return AttemptFailure{error.message.starts_with(message) ? error : error.withContext(message), std::nullopt};
      });
  return fetched.then([path, shown, fd](const HttpResponse&) {
                  return AciFile{path, shown, true};
                })
      .onAny([path, fd](const actors::Future<AciFile>& done) {
        if (!done.isReady()) actors::fs::disk().unlinkat(AT_FDCWD, path.c_str(), 0);
      });
}

}  // namespace prov::fetcher
