#pragma once

// Names nobody else picks: for staging and gc directories, temp files and
// rootfs ids. Not for secrets (a per-thread Mersenne Twister seeded from
// std::random_device). Thread-safe.

#include <string>

namespace prov::actors {

// 16 lowercase hex digits.
std::string randomName();

// A random (version 4) UUID: "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".
std::string uuid();

}  // namespace prov::actors
