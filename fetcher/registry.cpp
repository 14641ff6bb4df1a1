#include "fetcher/registry.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include <boost/url/url.hpp>
#include <rapidjson/document.h>

#include "actors/async.hpp"
#include "actors/clock.hpp"
#include "actors/collect.hpp"
#include "actors/log.hpp"
#include "actors/runtime.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/reference.hpp"
#include "fetcher/subprocess.hpp"

namespace prov::fetcher {

using actors::Future;
using RetryAfter = std::shared_ptr<std::optional<Duration>>;

namespace {

Url at(const Url& endpoint, std::string target) {
  Url url = endpoint;
  url.target = std::move(target);
  return url;
}

Url blobUrl(const Repository& repository, const messages::Descriptor& blob) {
  return at(repository.endpoint, "/v2/" + repository.name + "/blobs/" + blob.digest());
}

std::string blobWhat(const Repository& repository, const messages::Descriptor& blob) {
  return "Failed to fetch the blob '" + blob.digest() + "' of '" + repository.registry + "/" + repository.name +
         "' from '" + repository.endpoint.toString() + "'";
}

std::string scopeOf(const Repository& repository) { return "repository:" + repository.name + ":pull"; }

// "MANIFEST_UNKNOWN: manifest unknown" from a registry error body, or "".
std::string registryErrorCode(const std::string& body) {
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("errors") || !doc["errors"].IsArray()) return "";
  for (const auto& e : doc["errors"].GetArray()) {
    if (!e.IsObject() || !e.HasMember("code") || !e["code"].IsString()) continue;
    std::string text = e["code"].GetString();
    if (e.HasMember("message") && e["message"].IsString()) text += std::string(": ") + e["message"].GetString();
    return text.substr(0, 200);
  }
  return "";
}

Error statusError(const std::string& what, const HttpResponse& response) {
  const int status = response.status;
  std::string detail = registryErrorCode(response.body);
  auto say = [&](ErrorKind kind, const std::string& cause) {
    return Error(kind,
                 what + ": " + cause + " (HTTP " + std::to_string(status) + ")" + (detail.empty() ? "" : " " + detail));
  };
  if (status == 401) return say(ErrorKind::Unauthorized, "authentication failed");
  if (status == 403) return say(ErrorKind::Forbidden, "access denied");
  if (status == 404) return say(ErrorKind::NotFound, "not found");
  if (status == 429) return say(ErrorKind::Unavailable, "too many requests");
  if (status >= 500) return say(ErrorKind::Unavailable, "the registry failed");
  if (status >= 300 && status < 400) return say(ErrorKind::Unavailable, "a redirect without a usable Location");
  return say(ErrorKind::InvalidArgument, "the registry refused the request");
}

// Hashes and counts a blob on its way to the consumer, across resumed
// attempts.
class VerifyingSink final : public BodySink {
 public:
  VerifyingSink(actors::Runtime& runtime, std::shared_ptr<ByteSink> out, BlobCheck check, std::int64_t size,
                std::string what)
      : runtime_(runtime), out_(std::move(out)), check_(std::move(check)), expected_(size), what_(std::move(what)) {}

  std::uint64_t delivered() const { return check_.delivered(); }

  Try<Nothing> start(const HttpResponse& head) override {
    skip_ = 0;
    const std::string range = head.header("content-range");
    std::uint64_t offset = 0;
    if (head.status == 206) {
      // "bytes FIRST-LAST/TOTAL"
      if (range.rfind("bytes ", 0) != 0) return Error(ErrorKind::Corruption, what_ + ": a 206 without Content-Range");
      try {
        offset = std::stoull(range.substr(6));
      } catch (...) {
        return Error(ErrorKind::Corruption, what_ + ": a malformed Content-Range '" + range.substr(0, 100) + "'");
      }
      if (offset != delivered()) {
        return Error(ErrorKind::Corruption, what_ + ": asked to resume at byte " + std::to_string(delivered()) +
                                                ", the registry sent from byte " + std::to_string(offset));
      }
    } else {
      skip_ = delivered();  // the whole blob again: drop what was already handed on
    }
    const std::string length = head.header("content-length");
    if (!length.empty() && expected_ >= 0) {
      std::uint64_t total = 0;
      try {
        total = offset + std::stoull(length);
      } catch (...) {
        return Error(ErrorKind::Corruption, what_ + ": a malformed Content-Length");
      }
      if (total != static_cast<std::uint64_t>(expected_)) {
        return Error(ErrorKind::DigestMismatch, what_ + ": the registry sends " + std::to_string(total) +
                                                    " bytes, the descriptor says " + std::to_string(expected_));
      }
    }
    return Nothing{};
  }

  Future<Nothing> write(std::string_view chunk) override {
    if (skip_ > 0) {
      const std::size_t drop = static_cast<std::size_t>(std::min<std::uint64_t>(skip_, chunk.size()));
      chunk.remove_prefix(drop);
      skip_ -= drop;
      if (chunk.empty()) return Nothing{};
    }
    auto admitted = check_.admit(chunk.size());
    if (admitted.isError()) return admitted.error();
    // The chunk is hashed on the blocking pool while the consumer (the
    // layer's extraction: inflate, diffID, files) takes it, so the two run
    // on two cores instead of in turn (issue #18: the blob's sha256 was a
    // fifth of a big layer's CPU). The digest is judged at finish(), after
    // every chunk, before anything the consumer made is kept. The write
    // completes only when both are done with the chunk: the connection
    // reuses its buffer then, and check_ is used by one thread at a time,
    // chunk after chunk.
    // Whoever comes first hashes: a pool thread, or the consumer once it
    // is done with the chunk. The consumer is itself a pool job, so a pool
    // it fills (one thread, say) never leaves the chunk waiting for a
    // thread, and a refused pool job (a runtime shutting down) is no loss.
    auto piece = std::make_shared<HashedPiece>();
    auto hash = [this, chunk, piece] {
      if (piece->claimed.exchange(true)) return;
      check_.hash(chunk);
      piece->done.set(Nothing{});
    };
    (void)actors::async(runtime_, hash);
    auto used = out_->write(chunk);
    used.onAny(hash);
    return actors::await(piece->done.future(), used).then([](const auto& both) -> Future<Nothing> {
      return std::get<1>(both);  // the consumer's outcome, as it is
    });
  }

  Try<Nothing> finish() { return check_.finish(); }

 private:
  struct HashedPiece {
    std::atomic<bool> claimed{false};
    actors::Promise<Nothing> done;
  };

  actors::Runtime& runtime_;
  std::shared_ptr<ByteSink> out_;
  BlobCheck check_;
  std::int64_t expected_;
  std::string what_;
  std::uint64_t skip_ = 0;
};

}  // namespace

bool isLoopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  const std::string bare = host.size() > 2 && host.front() == '[' ? host.substr(1, host.size() - 2) : host;
  return ::inet_pton(AF_INET6, bare.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

namespace {

bool listedInsecure(const std::set<std::string>& insecure, const std::string& host, int port) {
  const std::string bare = host.size() > 2 && host.front() == '[' ? host.substr(1, host.size() - 2) : host;
  const std::string withPort = (bare.find(':') != std::string::npos ? "[" + bare + "]" : bare) + ":" +
                               std::to_string(port);
  return insecure.count(withPort) > 0 || ((port == 80 || port == 443) && insecure.count(bare) > 0);
}

}  // namespace

bool plainHttpAllowed(const std::set<std::string>& insecure, const std::string& host, int port) {
  return isLoopback(host) || listedInsecure(insecure, host, port);
}

TlsMode registryTlsMode(const std::set<std::string>& insecure, const std::string& host, int port) {
  if (listedInsecure(insecure, host, port)) return TlsMode::AnyCertOrPlain;
  if (isLoopback(host)) return TlsMode::VerifyOrPlain;
  return TlsMode::Verify;
}

struct RegistryClient::Impl : std::enable_shared_from_this<RegistryClient::Impl> {
  actors::Runtime& runtime;
  RegistryOptions options;
  std::shared_ptr<HttpClient> http;
  std::mutex mutex;
  struct Token {
    std::string authorization;
    actors::Clock::TimePoint expires;
  };
  std::map<std::string, Token> tokens;          // "origin scope"
  std::map<std::string, std::string> basic;     // "origin user" -> "Basic ..."
  std::map<std::string, Challenge> challenges;  // origin -> its Bearer challenge

  Impl(actors::Runtime& r, RegistryOptions o) : runtime(r), options(std::move(o)) {}

  // Tokens and Basic answers are per origin and per credentials: two images
  // with different credentials on one registry never share them.
  // (The key holds a hash of the credentials, never the secret itself.)
  // A helper's repository is keyed by the helper (its answer is not known
  // before the first challenge, and is the same for every request).
  static std::string keyOf(const Repository& repository) {
    const auto& c = repository.credentials;
    const std::string who =
        !repository.credentialHelper.empty() ? "helper:" + repository.credentialHelper + ":" + repository.helperServer
        : c ? sha256Digest(c->username() + '\0' + c->password() + '\0' + c->identity_token()).substr(7, 16)
            : "-";
    return repository.endpoint.origin() + " " + who;
  }

  struct HelperAnswer {
    Future<std::optional<messages::Credentials>> answer;
    actors::Clock::TimePoint expires;
  };
  std::map<std::string, HelperAnswer> helperAnswers;  // "helper server", under `mutex`

  // `repository` with the credentials its helper gives, if it has one (run
  // once per helper and server for 5 minutes; a failure is not kept).
  Future<Repository> withCredentials(const Repository& repository) {
    if (repository.credentialHelper.empty()) return repository;
    const std::string key = repository.credentialHelper + " " + repository.helperServer;
    std::optional<Future<std::optional<messages::Credentials>>> answer;
    {
      std::lock_guard lock(mutex);
      auto it = helperAnswers.find(key);
      if (it != helperAnswers.end() && it->second.expires > runtime.clock().now() &&
          (it->second.answer.isPending() || it->second.answer.isReady())) {
        answer = it->second.answer;
      } else {
        answer = runHelper(repository.credentialHelper, repository.helperServer);
        helperAnswers[key] = HelperAnswer{*answer, runtime.clock().now() + std::chrono::minutes(5)};
      }
    }
    return answer->then([repository](const std::optional<messages::Credentials>& found) {
      Repository with = repository;
      if (found) with.credentials = found;
      return with;
    });
  }

  Future<std::optional<messages::Credentials>> runHelper(const std::string& helper, const std::string& server) {
    const std::string program = "docker-credential-" + helper;
    const auto timeout = options.helperTimeout;
    return actors::async(runtime, [helper, program, server, timeout]() -> Try<std::optional<messages::Credentials>> {
      const std::string what = "Failed to get the credentials for '" + server + "' from '" + program + "'";
      auto ran = runSubprocess({program, "get"}, server, timeout);
      if (ran.isError()) return ran.error().withContext(what);
      if (ran->timedOut) {
        return Error(ErrorKind::Timeout, what + ": it did not answer within " +
                                             std::to_string(timeout.count() / 1000.0).substr(0, 4) +
                                             " s and was killed");
      }
      auto parsed = parseHelperAnswer(helper, ran->status, ran->output);
      if (parsed.isError()) return parsed.error().withContext(what);
      return *parsed;
    });
  }

  std::optional<std::string> cached(const Repository& repository) {
    std::lock_guard lock(mutex);
    auto token = tokens.find(keyOf(repository) + " " + scopeOf(repository));
    if (token != tokens.end() && token->second.expires > runtime.clock().now()) return token->second.authorization;
    auto b = basic.find(keyOf(repository));
    if (b != basic.end()) return b->second;
    return std::nullopt;
  }

  // The Bearer challenge this origin sent before, if any: an expired token
  // is renewed before the request instead of after a 401.
  std::optional<Challenge> knownChallenge(const Repository& repository) {
    std::lock_guard lock(mutex);
    auto it = challenges.find(repository.endpoint.origin());
    if (it == challenges.end()) return std::nullopt;
    return it->second;
  }

  Future<HttpResponse> send(const HttpRequest& request, const std::shared_ptr<BodySink>& sink) {
    return sink ? http->stream(request, sink) : http->fetch(request);
  }

  // One request; a 401 is answered once with fresh credentials.
  Future<HttpResponse> authorized(const Repository& repository, HttpRequest request, std::shared_ptr<BodySink> sink) {
    request.authorization = cached(repository);
    auto self = shared_from_this();
    if (!request.authorization) {
      if (auto challenge = knownChallenge(repository)) {
        const std::string what = "Failed to authenticate to '" + repository.registry + "' for '" + repository.name +
                                 "'";
        return withCredentials(repository)
            .then([self, challenge = *challenge, what](const Repository& with) {
              return self->bearer(with, challenge, what);
            })
            .then([self, request, sink](const std::string& authorization) mutable {
              request.authorization = authorization;
              return self->send(request, sink);
            });
      }
    }
    return send(request, sink)
        .then([self, repository, request, sink](const HttpResponse& r) mutable -> Future<HttpResponse> {
          // GCR answers an anonymous request with 403 and a challenge.
          const bool challenged = r.status == 401 ||
                                  (r.status == 403 && !request.authorization && !r.header("www-authenticate").empty());
          if (!challenged) return r;
          return self->withCredentials(repository)
              .then([self, r](const Repository& with) { return self->authenticate(with, r); })
              .then([self, request, sink](const std::string& authorization) mutable {
                request.authorization = authorization;
                return self->send(request, sink);
              });
        });
  }

  Future<std::string> authenticate(const Repository& repository, const HttpResponse& challenged) {
    const std::string what = "Failed to authenticate to '" + repository.registry + "' for '" + repository.name + "'";
    auto challenges = parseWwwAuthenticate(challenged.header("www-authenticate"));
    if (challenges.isError()) return challenges.error().withContext(what);
    for (const auto& challenge : *challenges) {
      if (challenge.scheme != "bearer") continue;
      {
        std::lock_guard lock(mutex);
        this->challenges[repository.endpoint.origin()] = challenge;
      }
      return bearer(repository, challenge, what);
    }
    for (const auto& challenge : *challenges) {
      if (challenge.scheme != "basic") continue;
      if (!repository.credentials) {
        return Error(ErrorKind::Unauthorized, what + ": the registry asks for credentials and none are configured");
      }
      std::string authorization = "Basic " + basicCredentials(*repository.credentials);
      std::lock_guard lock(mutex);
      basic[keyOf(repository)] = authorization;
      return authorization;
    }
    return Error(ErrorKind::Unauthorized, what + ": the registry sent no Bearer or Basic challenge (HTTP 401)");
  }

  Future<std::string> bearer(const Repository& repository, const Challenge& challenge, const std::string& what) {
    auto realm = challenge.params.find("realm");
    if (realm == challenge.params.end())
      return Error(ErrorKind::Unauthorized, what + ": a Bearer challenge without a realm");
    auto realmUrl = parseUrl(realm->second);
    if (realmUrl.isError()) return realmUrl.error().withContext(what);
    boost::urls::url url;
    url.set_scheme(realmUrl->scheme);
    url.set_host(realmUrl->hostForUrl());
    url.set_port_number(static_cast<std::uint16_t>(realmUrl->port));
    url.set_encoded_path(realmUrl->target.substr(0, realmUrl->target.find('?')));
    if (auto q = realmUrl->target.find('?'); q != std::string::npos)
      url.set_encoded_query(realmUrl->target.substr(q + 1));
    if (auto service = challenge.params.find("service"); service != challenge.params.end()) {
      url.params().append({"service", service->second});
    }
    auto scope = challenge.params.find("scope");
    url.params().append({"scope", scope != challenge.params.end() ? scope->second : scopeOf(repository)});
    HttpRequest request;
    request.url = *realmUrl;
    request.url.target = std::string(url.encoded_target());
    request.maxBody = 64 * 1024;
    if (repository.credentials && !repository.credentials->identity_token().empty()) {
      // An identity token is an OAuth2 refresh token: exchanged with a POST
      // (grant_type=refresh_token), as Docker does; its answer has
      // access_token.
      boost::urls::url form;
      auto params = form.params();
      params.append({"grant_type", "refresh_token"});
      params.append({"refresh_token", repository.credentials->identity_token()});
      params.append({"client_id", "provisioner"});
      if (auto service = challenge.params.find("service"); service != challenge.params.end()) {
        params.append({"service", service->second});
      }
      params.append({"scope", scope != challenge.params.end() ? scope->second : scopeOf(repository)});
      request.method = "POST";
      request.url.target = realmUrl->target;
      request.body = std::string(form.encoded_query());
      request.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    } else if (repository.credentials && !repository.credentials->username().empty()) {
      request.authorization = "Basic " + basicCredentials(*repository.credentials);
    }
    auto self = shared_from_this();
    const std::string key = keyOf(repository) + " " + scopeOf(repository);
    // What the log may say: not the key, whose middle is derived from the
    // credentials.
    const std::string logged = repository.endpoint.origin() + " " + scopeOf(repository);
    return http->fetch(request).then([self, key, logged, what](const HttpResponse& r) -> Future<std::string> {
      if (r.status == 401 || r.status == 403) {
        return Error(ErrorKind::Unauthorized,
                     what + ": the token service refused the credentials (HTTP " + std::to_string(r.status) + ")");
      }
      if (r.status != 200) return statusError(what + ": token service", r);
      rapidjson::Document doc;
      doc.Parse(r.body.data(), r.body.size());
      if (doc.HasParseError() || !doc.IsObject())
        return Error(ErrorKind::Corruption, what + ": the token response is not JSON");
      std::string token;
      for (const char* name : {"token", "access_token"}) {
        if (doc.HasMember(name) && doc[name].IsString() && doc[name].GetStringLength() > 0) {
          token = doc[name].GetString();
          break;
        }
      }
      if (token.empty()) return Error(ErrorKind::Corruption, what + ": the token response has no token");
      if (std::any_of(token.begin(), token.end(), [](unsigned char c) { return c < 0x21 || c == 0x7f; })) {
        // Never into a header: CR/LF there would inject headers.
        return Error(ErrorKind::Corruption,
                     what + ": the token service sent a token with a control character or space");
      }
      long seconds = 60;
      if (doc.HasMember("expires_in") && doc["expires_in"].IsInt64() && doc["expires_in"].GetInt64() > 0) {
        seconds = static_cast<long>(std::min<std::int64_t>(doc["expires_in"].GetInt64(), 24 * 3600));
      }
      std::string authorization = "Bearer " + token;
      actors::log(actors::LogLevel::Info, "auth.token", {{"scope", logged}, {"expires_s", std::to_string(seconds)}});
      std::lock_guard lock(self->mutex);
      self->tokens[key] = Token{authorization, self->runtime.clock().now() + std::chrono::seconds(seconds)};
      return authorization;
    });
  }

  // One authorized request whose non-2xx status becomes an error.
  Future<HttpResponse> call(const Repository& repository, const HttpRequest& request,
                            const std::shared_ptr<BodySink>& sink, const std::string& what, const RetryAfter& after) {
    return authorized(repository, request, sink).then([what, after](const HttpResponse& r) -> Future<HttpResponse> {
      if (r.status >= 200 && r.status < 300) return r;
      *after = parseRetryAfter(r.header("retry-after"));
      return statusError(what, r);
    });
  }

  // call() under the retry policy; `request` makes each attempt's request
  // (a resumed blob asks for a Range).
  Future<HttpResponse> retriedCall(const Repository& repository, std::function<HttpRequest()> request,
                                   const std::shared_ptr<BodySink>& sink, const std::string& what) {
    auto after = std::make_shared<std::optional<Duration>>();
    auto self = shared_from_this();
    return retry<HttpResponse>(
        runtime.clock(), options.retry,
        [self, repository, request, sink, what, after](int) {
          after->reset();
          return self->call(repository, request(), sink, what, after);
        },
        [after](const Future<HttpResponse>& failed) {
          return AttemptFailure{failed.failure(), *after};
        });
  }
};

RegistryClient::RegistryClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
RegistryClient::~RegistryClient() = default;

HttpClient& RegistryClient::http() { return *impl_->http; }

Try<std::shared_ptr<RegistryClient>> RegistryClient::create(actors::Runtime& runtime, RegistryOptions options) {
  for (const auto& mirror : options.mirrors) {
    if (auto url = parseUrl(mirror); url.isError()) return url.error().withContext("Invalid registry mirror");
  }
  if (auto hub = parseUrl(options.hubUrl); hub.isError()) return hub.error().withContext("Invalid registry URL");
  auto impl = std::make_shared<Impl>(runtime, options);
  HttpOptions http = options.http;
  http.allowPlainHttp = [insecure = options.insecure](const std::string& host, int port) {
    return plainHttpAllowed(insecure, host, port);
  };
  http.tlsMode = [insecure = options.insecure](const std::string& host, int port) {
    return registryTlsMode(insecure, host, port);
  };
  auto client = HttpClient::create(runtime, std::move(http));
  if (client.isError()) return client.error();
  impl->http = *client;
  return std::shared_ptr<RegistryClient>(new RegistryClient(std::move(impl)));
}

Try<std::vector<Repository>> RegistryClient::repositories(
    const messages::ImageReference& reference, const std::optional<messages::Credentials>& credentials) const {
  const auto& options = impl_->options;
  const std::string registry = canonicalRegistry(reference.registry());
  auto credentialsFor = [&](const std::string& host) {
    return credentials ? credentials : findCredentials(options.auths, host);
  };
  std::vector<Repository> list;
  if (registry == canonicalRegistry(options.mirrored)) {
    for (const auto& mirror : options.mirrors) {
      auto url = parseUrl(mirror);
      if (url.isError()) return url.error();
      url->target = "/";
      const std::string host = url->hostPort();
      Repository at{*url, registry, reference.repository(), findCredentials(options.auths, host), "", ""};
      // credHelpers may name a mirror with its port or, at 443, without.
      const std::string named = url->port == 443 && !options.helpers.byRegistry.count(host) ? url->hostForUrl() : host;
      if (const std::string helper = options.helpers.forRegistry(named); !helper.empty()) {
        at.credentialHelper = helper;
        at.helperServer = helperServerUrl(named);
      }
      list.push_back(std::move(at));
    }
  }
  Try<Url> upstream = registry == kDockerHub ? parseUrl(options.hubUrl) : registryUrl(reference.registry(), "/");
  if (upstream.isError()) return upstream.error();
  upstream->target = "/";
  // The config may name the registry, or the host the default registry
  // (--docker_registry) points at.
  auto found = credentialsFor(registry);
  if (!found) found = findCredentials(options.auths, upstream->hostPort());
  if (!found) found = findCredentials(options.auths, upstream->host);
  Repository repository{*upstream, registry, reference.repository(), found, "", ""};
  if (!credentials) {
    if (const std::string helper = options.helpers.forRegistry(registry); !helper.empty()) {
      repository.credentialHelper = helper;
      repository.helperServer = helperServerUrl(registry);
    }
  }
  list.push_back(std::move(repository));
  return list;
}

Future<Nothing> RegistryClient::ping(const Url& endpoint) {
  HttpRequest request;
  request.url = at(endpoint, "/v2/");
  request.maxBody = 64 * 1024;
  const std::string what = "Failed to reach the registry at '" + endpoint.toString() + "'";
  return impl_->http->fetch(request).then([what](const HttpResponse& r) -> Future<Nothing> {
    if (r.status == 200 || r.status == 401) return Nothing{};
    return statusError(what, r);
  });
}

Future<FetchedManifest> RegistryClient::fetchManifest(const Repository& repository, const std::string& tagOrDigest,
                                                      bool parse) {
  const bool byDigest = tagOrDigest.find(':') != std::string::npos;
  const std::string what = "Failed to fetch the manifest '" + repository.registry + "/" + repository.name +
                           (byDigest ? "@" : ":") + tagOrDigest + "' from '" + repository.endpoint.toString() + "'";
  if (byDigest) {
    if (auto valid = validateDigest(tagOrDigest); valid.isError()) return valid.error().withContext(what);
  }
  HttpRequest request;
  request.url = at(repository.endpoint, "/v2/" + repository.name + "/manifests/" + tagOrDigest);
  request.headers.emplace_back("Accept", mediatype::kManifestAccept);
  request.maxBody = kMaxManifestBytes;
  return impl_
      ->retriedCall(
          repository, [request] { return request; }, nullptr, what)
      .then([what, tagOrDigest, byDigest, parse](const HttpResponse& r) -> Future<FetchedManifest> {
        FetchedManifest fetched;
        // A signed schema 1 manifest's digest is its payload's.
        auto payload = manifestPayload(r.body);
        if (payload.isError()) return payload.error().withContext(what);
        if (byDigest) {
          if (auto ok = verifyDigest(*payload, tagOrDigest, "the manifest"); ok.isError())
            return ok.error().withContext(what);
          fetched.digest = tagOrDigest;
        } else {
          fetched.digest = sha256Digest(*payload);
          const std::string claimed = r.header("docker-content-digest");
          if (!claimed.empty()) {
            if (auto valid = validateDigest(claimed); valid.isError()) return valid.error().withContext(what);
            if (auto ok = verifyDigest(*payload, claimed, "the manifest"); ok.isError()) {
              return ok.error().withContext(what + " (Docker-Content-Digest)");
            }
          }
        }
        // What the digest covers is what is used.
        if (parse) {
          auto document = parseManifestDocument(*payload, r.header("content-type"));
          if (document.isError()) return document.error().withContext(what);
          fetched.document = std::move(*document);
        }
        fetched.mediaType = r.header("content-type");
        fetched.body = std::move(*payload);
        return fetched;
      });
}

Future<std::string> RegistryClient::readBlob(const Repository& repository, const messages::Descriptor& blob,
                                             std::size_t limit) {
  const std::string what = blobWhat(repository, blob);
  if (auto valid = validateDigest(blob.digest()); valid.isError()) return valid.error().withContext(what);
  if (blob.size() > static_cast<std::int64_t>(limit)) {
    return Error(ErrorKind::ResourceExhausted,
                 what + ": its size " + std::to_string(blob.size()) + " is over the limit of " + std::to_string(limit));
  }
  HttpRequest request;
  request.url = blobUrl(repository, blob);
  request.maxBody = limit;
  return impl_
      ->retriedCall(
          repository, [request] { return request; }, nullptr, what)
      .then([what, blob](const HttpResponse& r) -> Future<std::string> {
        if (blob.size() >= 0 && r.body.size() != static_cast<std::size_t>(blob.size())) {
          return Error(ErrorKind::DigestMismatch, what + ": got " + std::to_string(r.body.size()) +
                                                      " bytes, the descriptor says " + std::to_string(blob.size()));
        }
        if (auto ok = verifyDigest(r.body, blob.digest(), "the blob"); ok.isError())
          return ok.error().withContext(what);
        return r.body;
      });
}

Future<Nothing> RegistryClient::streamBlob(const Repository& repository, const messages::Descriptor& blob,
                                           std::shared_ptr<ByteSink> sink) {
  const std::string what = blobWhat(repository, blob);
  if (auto valid = validateDigest(blob.digest()); valid.isError()) return valid.error().withContext(what);
  auto check = BlobCheck::create(blob.digest(), blob.size(), what, impl_->options.maxUnsizedBlobBytes);
  if (check.isError()) return check.error();
  auto verifying = std::make_shared<VerifyingSink>(impl_->runtime, std::move(sink), std::move(*check), blob.size(),
                                                   what);
  HttpRequest base;
  base.url = blobUrl(repository, blob);
  auto request = [base, verifying] {
    HttpRequest r = base;
    if (verifying->delivered() > 0)
      r.headers.emplace_back("Range", "bytes=" + std::to_string(verifying->delivered()) + "-");
    return r;
  };
  return impl_->retriedCall(repository, request, verifying, what)
      .then([verifying](const HttpResponse&) -> Future<Nothing> { return verifying->finish(); });
}

}  // namespace prov::fetcher
