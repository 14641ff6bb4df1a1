#include <cerrno>

#include <gtest/gtest.h>

#include "actors/error.hpp"

namespace prov::actors {
namespace {

TEST(ErrorTest, KindNamesAndContext) {
  EXPECT_STREQ("not found", toString(ErrorKind::NotFound));
  EXPECT_STREQ("digest mismatch", toString(ErrorKind::DigestMismatch));
  Error e(ErrorKind::Unauthorized, "token rejected");
  Error wrapped = e.withContext("Failed to pull 'busybox'");
  EXPECT_EQ(ErrorKind::Unauthorized, wrapped.kind);
  EXPECT_EQ("Failed to pull 'busybox': token rejected", wrapped.message);
}

TEST(ErrorTest, ErrnoErrorNamesTheCause) {
  Error e = errnoError(ErrorKind::IO, "Failed to open '/nope'", ENOENT);
  EXPECT_EQ(ErrorKind::IO, e.kind);
  EXPECT_EQ("Failed to open '/nope': No such file or directory", e.message);
}

TEST(TryTest, ValueOrError) {
  Try<int> some = 3;
  ASSERT_TRUE(some.isSome());
  EXPECT_EQ(3, *some);
  Try<int> error = Error(ErrorKind::InvalidArgument, "bad");
  ASSERT_TRUE(error.isError());
  EXPECT_EQ("bad", error.error().message);
  Try<std::string> moved = std::string("abc");
  std::string taken = std::move(moved).get();
  EXPECT_EQ("abc", taken);
}

}  // namespace
}  // namespace prov::actors
