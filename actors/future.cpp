#include "actors/future.hpp"

#include <cstdio>
#include <cstdlib>

namespace prov::actors::detail {

void futurePreconditionFailed(const char* what) {
  std::fprintf(stderr, "fatal: %s\n", what);
  std::abort();
}

}  // namespace prov::actors::detail
