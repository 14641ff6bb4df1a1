// runSubprocess: what a credential helper gets from the agent that runs it
// (nothing but its stdin, stdout and stderr), and what it leaves (nothing:
// reaped by its pid, its group killed on a timeout).

#include "fetcher/subprocess.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace prov::fetcher {
namespace {

TEST(SubprocessTest, InputGoesInAndOutputComesOut) {
  auto ran = runSubprocess({"sh", "-c", "read -r line; echo \"got $line\"; echo oops >&2; exit 3"}, "hello",
                           std::chrono::seconds(10));
  ASSERT_TRUE(ran.isSome()) << ran.error().message;
  EXPECT_EQ(3, ran->status);
  EXPECT_EQ("got hello\n", ran->output);  // stderr went elsewhere
  EXPECT_FALSE(ran->timedOut);
  auto capped = runSubprocess({"sh", "-c", "yes | head -c 100000"}, "", std::chrono::seconds(10), 1000);
  ASSERT_TRUE(capped.isSome());
  EXPECT_EQ(1000u, capped->output.size());
  EXPECT_EQ(0, capped->status);
  auto missing = runSubprocess({"docker-credential-not-installed", "get"}, "", std::chrono::seconds(1));
  ASSERT_TRUE(missing.isError());
  EXPECT_EQ(ErrorKind::NotFound, missing.error().kind);
}

// A descriptor the embedding agent opened without close-on-exec (on 50
// here) does not reach the child: it has 0, 1 and 2 (and ls its own).
TEST(SubprocessTest, NoDescriptorOfOursReachesTheChild) {
  const int leaked = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC, on purpose
  ASSERT_GE(leaked, 0);
  ASSERT_EQ(50, ::dup2(leaked, 50));
  ::close(leaked);
  auto ran = runSubprocess({"sh", "-c", "ls /proc/$$/fd"}, "", std::chrono::seconds(10));
  ::close(50);
  ASSERT_TRUE(ran.isSome()) << ran.error().message;
  std::istringstream lines(ran->output);
  std::vector<std::string> fds;
  for (std::string line; std::getline(lines, line);) fds.push_back(line);
  EXPECT_EQ((std::vector<std::string>{"0", "1", "2"}), fds) << ran->output;
}

// Reaped by its own pid: a child of the embedder's is still the
// embedder's to reap afterwards.
TEST(SubprocessTest, OnlyItsOwnChildIsReaped) {
  const pid_t ours = ::fork();
  ASSERT_GE(ours, 0);
  if (ours == 0) ::_exit(7);
  auto ran = runSubprocess({"sh", "-c", "sleep 0.2"}, "", std::chrono::seconds(10));
  ASSERT_TRUE(ran.isSome());
  int status = 0;
  ASSERT_EQ(ours, ::waitpid(ours, &status, 0));
  EXPECT_EQ(7, WEXITSTATUS(status));
}

// A helper past its timeout is killed with what it started (its group).
TEST(SubprocessTest, ATimeoutKillsTheHelperAndWhatItStarted) {
  const auto started = std::chrono::steady_clock::now();
  auto ran = runSubprocess({"sh", "-c", "sleep 30 & echo $!; wait"}, "", std::chrono::milliseconds(300));
  ASSERT_TRUE(ran.isSome()) << ran.error().message;
  EXPECT_TRUE(ran->timedOut);
  EXPECT_EQ(-1, ran->status);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  const pid_t background = std::atoi(ran->output.c_str());
  ASSERT_GT(background, 0) << ran->output;
  // Gone, or a zombie left for init: not sleeping on.
  for (int i = 0; i < 500; ++i) {
    std::ifstream stat("/proc/" + std::to_string(background) + "/stat");
    std::string pid, name, state;
    if (!(stat >> pid >> name >> state) || state == "Z") return;
    ::usleep(10'000);
  }
  ADD_FAILURE() << "the helper's background child " << background << " still runs";
}

}  // namespace
}  // namespace prov::fetcher
