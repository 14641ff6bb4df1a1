#pragma once

// Errors and results that cross actor boundaries.
//
// An `Error` is a kind (what a caller branches on: retry when Unavailable,
// re-authenticate when Unauthorized, stop on DigestMismatch) plus a message a
// person can act on ("Failed to <verb> '<thing>': <cause>"). Callers never
// parse the message. No exception crosses an actor boundary: code that may
// throw is wrapped at the edge and becomes an Error of kind Internal.

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace prov::actors {

enum class ErrorKind {
  InvalidArgument,    // bad input from the caller (a malformed reference, a bad flag)
  NotFound,           // the thing does not exist (image, blob, container)
  AlreadyExists,      // it exists and must not
  Unauthorized,       // credentials missing or rejected (HTTP 401)
  Forbidden,          // credentials valid but not allowed (HTTP 403)
  Unavailable,        // transient: connection refused, 5xx, 429, process gone
  DigestMismatch,     // content does not match the digest that named it
  Corruption,         // content is malformed (bad tar, bad JSON, truncated)
  Unsupported,        // valid but not supported here (media type, kernel feature)
  ResourceExhausted,  // a limit was hit (size caps, entry counts, disk)
  IO,                 // a system call failed
  Timeout,            // a deadline passed
  Cancelled,          // the caller discarded the request
  Internal,           // a bug: an invariant broke or an exception escaped
};

// The kind's name, e.g. "not found". Never null.
const char* toString(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::Internal;
  std::string message;

  Error() = default;
  Error(ErrorKind k, std::string m) : kind(k), message(std::move(m)) {}

  // The same kind, with `context + ": "` put in front of the message.
  Error withContext(const std::string& context) const { return Error(kind, context + ": " + message); }

  bool operator==(const Error&) const = default;
};

// An Error of `kind` whose message is "<what>: <strerror(errnum)>".
Error errnoError(ErrorKind kind, const std::string& what, int errnum);

// The unit value: what a `void` computation produces as a result.
struct Nothing {
  bool operator==(const Nothing&) const = default;
};

// A value or an Error, for synchronous code (parsers, path checks).
template <typename T>
class [[nodiscard]] Try {
 public:
  Try(const T& value) : data_(value) {}            // NOLINT: implicit by design
  Try(T&& value) : data_(std::move(value)) {}      // NOLINT
  Try(const Error& error) : data_(error) {}        // NOLINT
  Try(Error&& error) : data_(std::move(error)) {}  // NOLINT

  bool isSome() const { return data_.index() == 0; }
  bool isError() const { return data_.index() == 1; }

  // Preconditions: isSome() for get(), isError() for error().
  const T& get() const& {
    assert(isSome());
    return std::get<0>(data_);
  }
  T& get() & {
    assert(isSome());
    return std::get<0>(data_);
  }
  T&& get() && {
    assert(isSome());
    return std::get<0>(std::move(data_));
  }
  const T& operator*() const& { return get(); }
  T& operator*() & { return get(); }
  T&& operator*() && { return std::move(*this).get(); }
  const T* operator->() const { return &get(); }
  T* operator->() { return &get(); }
  const Error& error() const {
    assert(isError());
    return std::get<1>(data_);
  }

 private:
  std::variant<T, Error> data_;
};

}  // namespace prov::actors
