// The command line under hostile but realistic use: output that cannot be
// written, signals in the middle of work, file names and metadata that are
// not UTF-8 or hold control characters, paths that are pipes, and flag
// values that used to be misread in silence. Each must end in a clear error
// and a non-zero exit (or in correct output), never an abort, a hang or a
// truncated file reported as success.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace kvinfer {
namespace {

namespace fs = std::filesystem;
using testing::CmdResult;
using testing::ReadFile;

std::string Kvinfer() { return std::string(KVINFER_BINARY_DIR) + "/kvinfer"; }

// A scratch folder of this test process.
std::string Scratch() {
  const std::string dir = ::testing::TempDir() + "/kvinfer_failures_" + std::to_string(getpid());
  fs::create_directories(dir);
  return dir;
}

// Runs a shell command line (its own redirections included); stderr is
// captured, stdout goes where `cmd` sends it.
CmdResult Shell(const std::string& cmd) {
  static int counter = 0;
  const std::string err_path = Scratch() + "/err_" + std::to_string(counter++);
  const int status = std::system(("( " + cmd + " ) 2>" + err_path).c_str());
  CmdResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = ReadFile(err_path);
  fs::remove(err_path);
  return r;
}

std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// stories260K copied under a file name that is not UTF-8, with its
// general.name ("llama") rewritten to ESC "[2J" 0xFF: a control sequence
// and a byte that is not UTF-8.
std::string HostileModelCopy() {
  const std::string src = testing::StoriesGguf();
  std::string bytes = ReadFile(src);
  const size_t key = bytes.find("general.name");
  EXPECT_NE(key, std::string::npos);
  const size_t value = key + 12 + 4 + 8;  // key, type (u32), length (u64)
  EXPECT_EQ(bytes.substr(value, 5), "llama");
  bytes.replace(value, 5, "\x1b[2J\xff");
  const std::string path = Scratch() + "/model-\xff\xfe.gguf";
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(CliFailures, FixturesArePresent) {
  ASSERT_TRUE(fs::exists(testing::StoriesGguf()))
      << "missing " << testing::StoriesGguf() << ": ../shared/ must be checked out beside the repo";
  ASSERT_TRUE(fs::exists(testing::DefaultModel()))
      << "missing " << testing::DefaultModel() << ": run ./scripts/setup.sh";
}

TEST(CliFailures, JsonWritersTakeBytesThatAreNotUtf8) {
  const std::string model = HostileModelCopy();
  const std::string dir = Scratch();

  CmdResult info = Shell(Kvinfer() + " info --json -m " + Quote(model) + " >" + dir + "/info.json");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const nlohmann::json j = nlohmann::json::parse(ReadFile(dir + "/info.json"));
  EXPECT_NE(j["path"].get<std::string>().find("\xEF\xBF\xBD"), std::string::npos);
  EXPECT_NE(j["name"].get<std::string>().find("\xEF\xBF\xBD"), std::string::npos);

  CmdResult gen = Shell(Kvinfer() + " generate -m " + Quote(model) +
                        " -p hi -n 2 --stats-json " + dir + "/stats.json >/dev/null");
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  const nlohmann::json stats = nlohmann::json::parse(ReadFile(dir + "/stats.json"));
  EXPECT_EQ(stats["generated_tokens"], 2);

  CmdResult kv = Shell(Kvinfer() + " kv-size --json -m " + Quote(model) + " >" + dir + "/kv.json");
  ASSERT_EQ(kv.exit_code, 0) << kv.err;
  EXPECT_FALSE(nlohmann::json::parse(ReadFile(dir + "/kv.json")).empty());

  CmdResult bench = Shell(Kvinfer() + " bench speed --json -p 8 -n 4 -r 1 -m " + Quote(model) +
                          " >" + dir + "/bench.json");
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  EXPECT_NE(nlohmann::json::parse(ReadFile(dir + "/bench.json"))["model"].get<std::string>().find(
                "\xEF\xBF\xBD"),
            std::string::npos);
}

TEST(CliFailures, ControlCharactersInMetadataAreEscapedOnTheTerminal) {
  const std::string model = HostileModelCopy();
  const std::string out = Scratch() + "/info.txt";
  CmdResult info = Shell(Kvinfer() + " info -m " + Quote(model) + " >" + out);
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const std::string text = ReadFile(out);
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_NE(text.find("\\x1b[2J\\xff"), std::string::npos) << text;
}

TEST(CliFailures, OutputThatCannotBeWrittenIsAnError) {
  const std::string stories = testing::StoriesGguf();
  const std::string dir = Scratch();
  const std::string prompts = dir + "/prompts.jsonl";
  std::ofstream(prompts) << "{\"prompt\": \"Once\", \"max_tokens\": 2}\n";
  for (const std::string& args : std::vector<std::string>{
           " info --json -m " + stories, " info -m " + stories,
        " generate -m " + stories + " -p Once -n 4",
        " batch -m " + stories + " --prompts " + prompts,
        " kv-size --preset llama-2-7b --json", " kv-size --preset llama-2-7b",
        " bench speed --json -p 8 -n 4 -r 1 -m " + stories}) {
    CmdResult r = Shell(Kvinfer() + args + " >/dev/full");
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.err.find("standard output"), std::string::npos) << args << ": " << r.err;
  }
  // A stats file on a full device: the run fails and says which file.
  CmdResult stats =
      Shell(Kvinfer() + " generate -m " + stories + " -p Once -n 2 --stats-json /dev/full >/dev/null");
  EXPECT_EQ(stats.exit_code, 1);
  EXPECT_NE(stats.err.find("/dev/full"), std::string::npos) << stats.err;
  // A pipe whose reader is gone, with SIGPIPE ignored: the write fails with
  // EPIPE. The read end is closed before kvinfer starts, so the write can
  // never land in the pipe's buffer first.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);
  const std::string err_path = Scratch() + "/epipe_err";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::signal(SIGPIPE, SIG_IGN);  // stays ignored across exec
    ::dup2(fds[1], STDOUT_FILENO);
    const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(err_fd, STDERR_FILENO);
    const std::string bin = Kvinfer();
    ::execl(bin.c_str(), bin.c_str(), "info", "-m", stories.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(ReadFile(err_path).find("Broken pipe"), std::string::npos) << ReadFile(err_path);
}

TEST(CliFailures, StatsJsonNeverOverwritesTheModel) {
  const std::string model = Scratch() + "/copy.gguf";
  fs::copy_file(testing::StoriesGguf(), model, fs::copy_options::overwrite_existing);
  const auto size = fs::file_size(model);
  CmdResult r = Shell(Kvinfer() + " generate -m " + model + " -p hi -n 2 --stats-json " + model +
                      " >/dev/null");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--stats-json"), std::string::npos) << r.err;
  EXPECT_EQ(fs::file_size(model), size);
  CmdResult missing_dir = Shell(Kvinfer() + " generate -m " + model +
                                " -p hi -n 2 --stats-json /nonexistent-dir/s.json >/dev/null");
  EXPECT_EQ(missing_dir.exit_code, 1);
  EXPECT_NE(missing_dir.err.find("does not exist"), std::string::npos) << missing_dir.err;
}

TEST(CliFailures, BenchOutputFolderIsCheckedBeforeTheRun) {
  CmdResult r = Shell(Kvinfer() + " bench concurrency -m " + testing::StoriesGguf() +
                      " -o /proc/kvinfer-cannot-be-here --no-plot");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/proc/kvinfer-cannot-be-here"), std::string::npos) << r.err;
  // Nothing ran: a failure before the benchmark, not after it.
  EXPECT_EQ(r.err.find("tok/s"), std::string::npos) << r.err;
}

TEST(CliFailures, ANamedPipeAsTheModelIsRefusedAtOnce) {
  const std::string fifo = Scratch() + "/model.fifo";
  fs::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // `timeout` turns a hang into exit 124, which the check below rejects.
  CmdResult r = Shell("timeout 30 " + Kvinfer() + " info -m " + fifo);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("not a regular file"), std::string::npos) << r.err;
}

TEST(CliFailures, MisleadingMessagesAreFixed) {
  const std::string stories = testing::StoriesGguf();
  CmdResult sub = Shell(Kvinfer() + " frobnicate");
  EXPECT_NE(sub.exit_code, 0);
  EXPECT_NE(sub.err.find("unknown subcommand 'frobnicate'"), std::string::npos) << sub.err;

  CmdResult empty_model = Shell(Kvinfer() + " generate -m '' -p hi");
  EXPECT_NE(empty_model.exit_code, 0);
  EXPECT_NE(empty_model.err.find("model path is empty"), std::string::npos) << empty_model.err;

  CmdResult not_dir = Shell(Kvinfer() + " info -m /etc/passwd/model.gguf");
  EXPECT_EQ(not_dir.exit_code, 1);
  EXPECT_EQ(not_dir.err.find("does not exist"), std::string::npos) << not_dir.err;
  EXPECT_NE(not_dir.err.find("Not a directory"), std::string::npos) << not_dir.err;

  for (const char* seed : {"-1", "18446744073709551616", "1e3", "abc"}) {
    CmdResult r = Shell(Kvinfer() + " generate -m " + stories + " -p hi -n 1 --seed " + seed +
                        " >/dev/null");
    EXPECT_NE(r.exit_code, 0) << seed;
    EXPECT_NE(r.err.find("seed"), std::string::npos) << seed << ": " << r.err;
  }
  CmdResult max_seed = Shell(Kvinfer() + " generate -m " + stories +
                             " -p hi -n 1 --temperature 1 --seed 18446744073709551615 >/dev/null");
  EXPECT_EQ(max_seed.exit_code, 0) << max_seed.err;

  CmdResult tiny_pool = Shell(Kvinfer() + " generate -m " + stories +
                              " -p hi -n 1 --kv paged --kv-memory-mib 1e-7 >/dev/null");
  EXPECT_EQ(tiny_pool.exit_code, 1);
  EXPECT_NE(tiny_pool.err.find("smaller than one block"), std::string::npos) << tiny_pool.err;
}

TEST(CliFailures, APromptThatCanNeverFitThePoolIsAnError) {
  CmdResult r = Shell(Kvinfer() + " generate -m " + testing::StoriesGguf() +
                      " -p 'Once upon a time there was a little girl' -n 4 --kv paged "
                      "--block-size 2 --num-blocks 2 >/dev/null");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("KV pool"), std::string::npos) << r.err;
}

// Starts `cmd` in the background, waits until `ready` holds (polling, at
// most `limit`), sends `sig`, and returns the command's exit status.
int SignalWhen(const std::string& cmd, int sig, const std::function<bool()>& ready,
               std::chrono::seconds limit, std::string* err) {
  const std::string pid_path = Scratch() + "/pid";
  const std::string status_path = Scratch() + "/status";
  const std::string err_path = Scratch() + "/bg_err";
  fs::remove(status_path);
  const std::string line = "( " + cmd + " 2>" + err_path + " & echo $! >" + pid_path +
                           "; wait $!; echo $? >" + status_path + " ) &";
  EXPECT_EQ(std::system(line.c_str()), 0);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline && !ready() && !fs::exists(status_path)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(ready()) << "the command never reached the state to signal it in";
  const std::string pid = ReadFile(pid_path);
  EXPECT_EQ(std::system(("kill -" + std::to_string(sig) + " " + pid).c_str()), 0);
  const auto wait_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(status_path) || ReadFile(status_path).empty()) {
    if (std::chrono::steady_clock::now() > wait_deadline) {
      ADD_FAILURE() << "the command did not exit after the signal";
      std::system(("kill -9 " + pid).c_str());
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  *err = ReadFile(err_path);
  return std::stoi(ReadFile(status_path));
}

size_t CountLines(const std::string& path) {
  const std::string s = ReadFile(path);
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

TEST(CliFailures, ASignalMidBatchKeepsEveryFinishedResult) {
  const std::string dir = Scratch();
  const std::string prompts = dir + "/signal.jsonl";
  // Line 1 finishes at once; line 2 runs until its context is full (long
  // after the signal); lines 3 and 4 finish at once but wait behind line 2
  // for input order, so only the signal writes them.
  std::ofstream(prompts) << "{\"prompt\": \"One\", \"max_tokens\": 2}\n"
                         << "{\"prompt\": \"Two\", \"max_tokens\": 16777216, \"ignore_eos\": true}\n"
                         << "{\"prompt\": \"Three\", \"max_tokens\": 2}\n"
                         << "{\"prompt\": \"Four\", \"max_tokens\": 2}\n";
  const std::string out = dir + "/signal.out";
  fs::remove(out);
  std::string err;
  const int status = SignalWhen(
      Kvinfer() + " batch -m " + testing::DefaultModel() + " --kv paged --prompts " + prompts +
          " >" + out,
      SIGTERM, [&] { return fs::exists(out) && CountLines(out) >= 1; },
      std::chrono::seconds(120), &err);
  EXPECT_EQ(status, 128 + SIGTERM) << err;
  std::ifstream in(out);
  std::string line;
  std::vector<int> indices;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    indices.push_back(j["index"].get<int>());
    EXPECT_EQ(j["finish_reason"], "length") << line;
  }
  EXPECT_EQ(indices, (std::vector<int>{0, 2, 3})) << err;
  EXPECT_NE(err.find("3 of 4 results written"), std::string::npos) << err;
}

TEST(CliFailures, ASignalMidGenerateStillWritesTheStats) {
  const std::string dir = Scratch();
  const std::string out = dir + "/gen.out";
  const std::string stats = dir + "/gen-stats.json";
  fs::remove(out);
  fs::remove(stats);
  std::string err;
  const int status = SignalWhen(
      Kvinfer() + " generate -m " + testing::DefaultModel() +
          " --kv paged -p 'Once upon a time' -n 100000 --ignore-eos --stats-json " + stats + " >" +
          out,
      SIGINT, [&] { return fs::exists(out) && fs::file_size(out) > 0; }, std::chrono::seconds(120),
      &err);
  EXPECT_EQ(status, 128 + SIGINT) << err;
  ASSERT_TRUE(fs::exists(stats)) << err;
  const nlohmann::json j = nlohmann::json::parse(ReadFile(stats));
  EXPECT_EQ(j["finish_reason"], "aborted");
  EXPECT_GT(j["generated_tokens"].get<int>(), 0);
}

}  // namespace
}  // namespace kvinfer
