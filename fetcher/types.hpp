#pragma once

// The runtime's error types, as the fetcher's headers use them.

#include "actors/error.hpp"

namespace prov::fetcher {

using actors::Error;
using actors::ErrorKind;
using actors::Nothing;
using actors::Try;

}  // namespace prov::fetcher
