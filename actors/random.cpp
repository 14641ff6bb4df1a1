#include "actors/random.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <random>

namespace prov::actors {

namespace {

std::uint64_t next() {
  static thread_local std::mt19937_64 random(randomSeed());
  return random();
}

}  // namespace

std::uint64_t randomSeed() {
  std::uint64_t seed = 0;
  ssize_t got;
  do {
    got = ::getrandom(&seed, sizeof(seed), 0);
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof(seed))) return seed;
  std::random_device device;  // getrandom refused (a seccomp filter, say)
  return (static_cast<std::uint64_t>(device()) << 32) | device();
}

std::string randomName() {
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(next()));
  return out;
}

std::string uuid() {
  char out[37];
  const std::uint64_t a = next(), b = next();
  std::snprintf(out, sizeof(out), "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xfff),
                static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                static_cast<unsigned long long>(b & 0xffffffffffffull));
  return out;
}

}  // namespace prov::actors
