#include "actors/random.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>

namespace prov::actors {
namespace {

TEST(RandomTest, SeedsAndNamesDifferAcrossCallsAndThreads) {
  std::set<std::uint64_t> seeds;
  for (int i = 0; i < 64; ++i) seeds.insert(randomSeed());
  EXPECT_EQ(64u, seeds.size());

  // Each thread seeds its own generator: two threads' first names differ.
  std::string first, second;
  std::thread([&] { first = randomName(); }).join();
  std::thread([&] { second = randomName(); }).join();
  EXPECT_EQ(16u, first.size());
  EXPECT_EQ(std::string::npos, first.find_first_not_of("0123456789abcdef"));
  EXPECT_NE(first, second);

  const std::string id = uuid();
  ASSERT_EQ(36u, id.size());
  EXPECT_EQ('4', id[14]);
  EXPECT_NE(std::string::npos, std::string("89ab").find(id[19]));
}

}  // namespace
}  // namespace prov::actors
