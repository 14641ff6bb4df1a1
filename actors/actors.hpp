#pragma once

// The whole runtime in one include, for components and tests.

#include "actors/async.hpp"
#include "actors/clock.hpp"
#include "actors/collect.hpp"
#include "actors/defer.hpp"
#include "actors/dispatch.hpp"
#include "actors/error.hpp"
#include "actors/future.hpp"
#include "actors/gate.hpp"
#include "actors/loop.hpp"
#include "actors/process.hpp"
#include "actors/process_owner.hpp"
#include "actors/runtime.hpp"
#include "actors/rwlock.hpp"
#include "actors/slots.hpp"
