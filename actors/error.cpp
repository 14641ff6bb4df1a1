#include "actors/error.hpp"

#include <cstring>

namespace prov::actors {

const char* toString(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidArgument: return "invalid argument";
    case ErrorKind::NotFound: return "not found";
    case ErrorKind::AlreadyExists: return "already exists";
    case ErrorKind::Unauthorized: return "unauthorized";
    case ErrorKind::Forbidden: return "forbidden";
    case ErrorKind::Unavailable: return "unavailable";
    case ErrorKind::DigestMismatch: return "digest mismatch";
    case ErrorKind::Corruption: return "corruption";
    case ErrorKind::Unsupported: return "unsupported";
    case ErrorKind::ResourceExhausted: return "resource exhausted";
    case ErrorKind::IO: return "I/O error";
    case ErrorKind::Timeout: return "timeout";
    case ErrorKind::Cancelled: return "cancelled";
    case ErrorKind::Internal: return "internal error";
  }
  return "unknown error";
}

Error errnoError(ErrorKind kind, const std::string& what, int errnum) {
  char buffer[256];
  // GNU strerror_r returns the message, which may or may not be `buffer`.
  const char* text = strerror_r(errnum, buffer, sizeof(buffer));
  return Error(kind, what + ": " + text);
}

}  // namespace prov::actors
