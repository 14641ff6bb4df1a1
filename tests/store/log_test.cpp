// The structured log: its line format, the query strings it cuts, levels and
// sinks; and what a pull logs (start, token, retry, end) with nothing secret
// in any field.

#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/log.hpp"
#include "tests/store/store_fixture.hpp"
#include "tests/support/await.hpp"

namespace prov::store {
namespace {

using actors::LogLevel;
using actors::LogRecord;
using testing::TarEntry;

TEST(LogTest, LinesAreLogfmtWithQuotedValuesAndNoQueryStrings) {
  LogRecord record{std::chrono::system_clock::time_point(std::chrono::milliseconds(1764637323456)),
                   LogLevel::Warn,
                   "retry",
                   {{"attempt", "2"}, {"error", "HTTP 503 \"busy\"\nnext"}, {"empty", ""}}};
  EXPECT_EQ(
      "2025-12-02T01:02:03.456Z level=warn event=retry attempt=2 error=\"HTTP 503 \\\"busy\\\"\\nnext\" empty=\"\"",
      actors::formatLog(record));
  EXPECT_EQ("GET 'https://blobs.example/x?…' failed; see http://h/p",
            actors::withoutQueries("GET 'https://blobs.example/x?X-Amz-Signature=abc&y=1' failed; see http://h/p"));
  EXPECT_EQ("no url here?x=1", actors::withoutQueries("no url here?x=1"));
  EXPECT_EQ(
      "realm HTTPS://auth.example/token?… and https://registry:5000/v2/",
      actors::withoutQueries("realm HTTPS://alice:pw@auth.example/token?scope=x and https://bob@registry:5000/v2/"));
  EXPECT_EQ("ftp://u:p@h/x?y", actors::withoutQueries("ftp://u:p@h/x?y"));
  EXPECT_EQ(LogLevel::Debug, actors::parseLogLevel("debug"));
  EXPECT_FALSE(actors::parseLogLevel("loud"));
}

// Records kept by a sink, for as long as it is installed.
class Recorder {
 public:
  explicit Recorder(LogLevel level) {
    actors::setLogSink(
        [this](const LogRecord& r) {
          std::lock_guard lock(mutex_);
          records_.push_back(r);
        },
        level);
  }
  ~Recorder() { actors::setLogSink({}); }
  std::vector<LogRecord> records() const {
    std::lock_guard lock(mutex_);
    return records_;
  }
  std::vector<std::string> events() const {
    std::vector<std::string> names;
    for (const auto& r : records()) names.push_back(r.event);
    return names;
  }
  std::string field(const std::string& event, const std::string& key) const {
    for (const auto& r : records()) {
      if (r.event != event) continue;
      for (const auto& f : r.fields) {
        if (f.key == key) return f.value;
      }
    }
    return "(none)";
  }

 private:
  mutable std::mutex mutex_;
  std::vector<LogRecord> records_;
};

TEST(LogTest, NothingBelowTheThresholdAndNothingWithoutASink) {
  EXPECT_FALSE(actors::logEnabled(LogLevel::Error));
  {
    Recorder recorder(LogLevel::Warn);
    EXPECT_TRUE(actors::logEnabled(LogLevel::Warn));
    EXPECT_FALSE(actors::logEnabled(LogLevel::Info));
    actors::log(LogLevel::Info, "quiet");
    actors::log(LogLevel::Error, "loud", {{"k", "v"}});
    EXPECT_EQ(std::vector<std::string>{"loud"}, recorder.events());
  }
  EXPECT_FALSE(actors::logEnabled(LogLevel::Error));
}

// A pull with credentials through a token service, one 503 on the way: each
// step logged, and neither the password nor a token in any line.
TEST_F(ImageStoreTest, APullLogsItsStepsAndNoSecret) {
  registry_.requireBearer(std::make_pair(std::string("alice"), std::string("s3cret-pw")));
  auto published = publish("team/app", "v1", {{TarEntry::file("etc/os", "app")}});
  registry_.fail({published.layerDigests[0], 503, {}, "", 1});
  Recorder recorder(LogLevel::Debug);
  auto image = dockerImage(registry_.hostPort() + "/team/app:v1");
  image.mutable_credentials()->set_username("alice");
  image.mutable_credentials()->set_password("s3cret-pw");
  AWAIT_READY(store_->get(image));
  const auto events = recorder.events();
  for (const char* event : {"pull.start", "auth.token", "retry", "pull.end"}) {
    EXPECT_NE(events.end(), std::find(events.begin(), events.end(), event)) << event;
  }
  EXPECT_EQ("1", recorder.field("pull.end", "fetched_layers"));
  EXPECT_EQ(published.manifestDigest, recorder.field("pull.end", "digest"));
  EXPECT_EQ("1", recorder.field("retry", "attempt"));
  for (const auto& r : recorder.records()) {
    for (const auto& f : r.fields) {
      EXPECT_EQ(std::string::npos, f.value.find("s3cret-pw")) << r.event << " " << f.key;
      EXPECT_EQ(std::string::npos, f.value.find("Bearer ")) << r.event << " " << f.key;
      EXPECT_EQ(std::string::npos, f.value.find("Basic ")) << r.event << " " << f.key;
    }
  }
}

}  // namespace
}  // namespace prov::store
