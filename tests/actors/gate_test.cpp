#include <gtest/gtest.h>

#include "actors/actors.hpp"
#include "tests/support/await.hpp"

namespace prov::actors {
namespace {

TEST(GateTest, CloseWaitsForThoseInside) {
  Gate gate;
  ASSERT_TRUE(gate.enter());
  ASSERT_TRUE(gate.enter());
  Future<Nothing> closed = gate.close();
  EXPECT_FALSE(gate.enter());  // no new work once closing
  EXPECT_TRUE(closed.isPending());
  gate.leave();
  EXPECT_TRUE(closed.isPending());
  gate.leave();
  AWAIT_READY(closed);
  AWAIT_READY(gate.close());  // idempotent
}

TEST(GateTest, CloseWhenEmptyIsReady) {
  Gate gate;
  AWAIT_READY(gate.close());
  EXPECT_TRUE(gate.closed());
}

}  // namespace
}  // namespace prov::actors
