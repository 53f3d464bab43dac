// Log lines fit where they go: the "<N>" priority prefix only when stderr is
// the journal's stream (JOURNAL_STREAM names its device and inode), a level
// word anywhere else. stderr is redirected to a real file for each check.
#include "io/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace pcimirror {
namespace {

// Points fd 2 at a fresh temporary file for its lifetime; restores the old
// stderr and JOURNAL_STREAM afterwards.
class CapturedStderr {
 public:
  CapturedStderr() {
    char path[] = "/tmp/pcimirror-log-test.XXXXXX";
    fd_ = ::mkstemp(path);
    EXPECT_GE(fd_, 0) << "mkstemp: " << errno;
    ::unlink(path);
    saved_ = ::dup(2);
    EXPECT_GE(saved_, 0);
    EXPECT_EQ(::dup2(fd_, 2), 2);
    if (const char* v = std::getenv("JOURNAL_STREAM")) saved_env_ = v;
    had_env_ = std::getenv("JOURNAL_STREAM") != nullptr;
  }
  ~CapturedStderr() {
    ::dup2(saved_, 2);
    ::close(saved_);
    ::close(fd_);
    if (had_env_)
      ::setenv("JOURNAL_STREAM", saved_env_.c_str(), 1);
    else
      ::unsetenv("JOURNAL_STREAM");
  }
  CapturedStderr(const CapturedStderr&) = delete;
  CapturedStderr& operator=(const CapturedStderr&) = delete;

  /// "DEV:INO" of the capture file, as systemd would set JOURNAL_STREAM.
  std::string journal_stream() const {
    struct stat st {};
    EXPECT_EQ(::fstat(fd_, &st), 0);
    return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  }
  /// Everything written to stderr so far.
  std::string text() const {
    std::string out;
    char buf[4096];
    ssize_t n;
    off_t off = 0;
    while ((n = ::pread(fd_, buf, sizeof buf, off)) > 0) {
      out.append(buf, static_cast<size_t>(n));
      off += n;
    }
    return out;
  }

 private:
  int fd_ = -1;
  int saved_ = -1;
  std::string saved_env_;
  bool had_env_ = false;
};

TEST(Log, PriorityPrefixOnlyWhenStderrIsTheJournal) {
  CapturedStderr err;
  ::setenv("JOURNAL_STREAM", err.journal_stream().c_str(), 1);
  EXPECT_TRUE(is_journal_stream(2));
  log_info("serving 4 slices");
  log_warning("slow device");
  EXPECT_EQ(err.text(), "<6>serving 4 slices\n<4>slow device\n");
}

TEST(Log, LevelWordWithoutJournalStream) {
  CapturedStderr err;
  ::unsetenv("JOURNAL_STREAM");
  EXPECT_FALSE(is_journal_stream(2));
  log_info("serving 4 slices");
  log_error("mirror failed");
  EXPECT_EQ(err.text(),
            "pcimirror: info: serving 4 slices\n"
            "pcimirror: error: mirror failed\n");
}

TEST(Log, InheritedJournalStreamNamingAnotherFileIsNotTheJournal) {
  // A child of a service inherits JOURNAL_STREAM while its stderr goes
  // elsewhere (a pipe, a file): no prefix there.
  CapturedStderr err;
  struct stat st {};
  ASSERT_EQ(::fstat(2, &st), 0);
  const std::string other_inode =
      std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
  ::setenv("JOURNAL_STREAM", other_inode.c_str(), 1);
  EXPECT_FALSE(is_journal_stream(2));
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::setenv("JOURNAL_STREAM", err.journal_stream().c_str(), 1);
  EXPECT_FALSE(is_journal_stream(fds[0]));
  EXPECT_TRUE(is_journal_stream(2));
  ::close(fds[0]);
  ::close(fds[1]);
  ::setenv("JOURNAL_STREAM", other_inode.c_str(), 1);
  log_warning("slow device");
  EXPECT_EQ(err.text(), "pcimirror: warning: slow device\n");
}

TEST(Log, MalformedJournalStreamIsIgnored) {
  CapturedStderr err;
  const std::string good = err.journal_stream();
  for (const std::string& bad :
       {std::string(), std::string("12"), good + "x", " " + good, good + ":1",
        std::string("a:b"), std::string(":") + good,
        std::string("99999999999999999999999:1")}) {
    ::setenv("JOURNAL_STREAM", bad.c_str(), 1);
    EXPECT_FALSE(is_journal_stream(2)) << "JOURNAL_STREAM='" << bad << "'";
  }
  ::setenv("JOURNAL_STREAM", good.c_str(), 1);
  EXPECT_TRUE(is_journal_stream(2));
}

TEST(Log, LevelFilterApplies) {
  CapturedStderr err;
  ::unsetenv("JOURNAL_STREAM");
  set_log_level(LogLevel::kInfo);
  log_debug("hidden");
  set_log_level(LogLevel::kDebug);
  log_debug("shown");
  set_log_level(LogLevel::kInfo);
  EXPECT_EQ(err.text(), "pcimirror: debug: shown\n");
}

}  // namespace
}  // namespace pcimirror
