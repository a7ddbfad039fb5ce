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
#include <limits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kvinfer/kvinfer.h"
#include "poisoned_model.h"
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

// Non-finite logits from a corrupt model. Two prompts, as chat turns, for
// the model whose embedding row of one token holds NaN: that token is in
// B's turn and in neither A's turn nor A's greedy reply, so A's requests
// are healthy and B's fail.
constexpr const char* kPromptA = "Once upon a time";
constexpr const char* kPromptB = "The purple dragon ate zebras quickly";
constexpr int kReplyTokens = 8;

std::vector<int32_t> ChatTokens(const Model& m, const std::string& text) {
  const ChatMessage msg{"user", text};
  StatusOr<std::string> rendered = m.ApplyChatTemplate({&msg, 1}, true);
  EXPECT_TRUE(rendered.ok()) << rendered.status().ToString();
  StatusOr<std::vector<int32_t>> ids = m.Tokenize(*rendered, true, true);
  EXPECT_TRUE(ids.ok()) << ids.status().ToString();
  return *ids;
}

struct PoisonedTurns {
  std::vector<int32_t> a_prompt, a_reply, b_prompt;
  int32_t token = -1;    // the poisoned token: in b_prompt only
  std::string model;     // stories260K with its embedding row NaN
};

PoisonedTurns MakePoisonedTurns() {
  PoisonedTurns p;
  StatusOr<Model> m = Model::Load(testing::StoriesGguf());
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  p.a_prompt = ChatTokens(*m, kPromptA);
  p.b_prompt = ChatTokens(*m, kPromptB);
  auto e = Engine::Create(*m, {.num_threads = 1, .max_seqs = 1});
  EXPECT_TRUE(e.ok());
  StatusOr<RequestId> id = (*e)->AddRequestTokens(p.a_prompt, {.max_tokens = kReplyTokens});
  EXPECT_TRUE(id.ok());
  while ((*e)->HasWork()) {
    for (const RequestOutput& o : (*e)->Step()) {
      p.a_reply.insert(p.a_reply.end(), o.new_tokens.begin(), o.new_tokens.end());
    }
  }
  auto in = [](const std::vector<int32_t>& v, int32_t t) {
    return std::find(v.begin(), v.end(), t) != v.end();
  };
  for (int32_t t : p.b_prompt) {
    if (!in(p.a_prompt, t) && !in(p.a_reply, t)) {
      p.token = t;
      break;
    }
  }
  EXPECT_GE(p.token, 0) << "every token of B's turn is in A's turn or reply";
  p.model = Scratch() + "/embedding-nan.gguf";
  testing::WritePoisonedStories(p.model, {testing::EmbeddingRow(p.token, std::nanf(""))});
  return p;
}

// NaN in one weight of layer 2: every request fails at its prefill.
std::string LayerPoisonedModel() {
  const std::string path = Scratch() + "/layer-nan.gguf";
  testing::WritePoisonedStories(path, {{"blk.2.ffn_down.weight", 0, 1, std::nanf("")}});
  return path;
}

TEST(CliFailures, GenerateWithNonFiniteLogitsIsAnError) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string model = LayerPoisonedModel();
  const std::string stats = Scratch() + "/nan-stats.json";
  CmdResult r = Shell(Kvinfer() + " generate -m " + model + " -p 'Once upon a time' -n 4 " +
                      "--stats-json " + stats + " >/dev/null");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("kvinfer: error: non-finite values (NaN) in layer 2 FFN down projection "
                       "(ffn_down) at position 0"),
            std::string::npos)
      << r.err;
  const nlohmann::json j = nlohmann::json::parse(ReadFile(stats));
  EXPECT_EQ(j["finish_reason"], "error");
  EXPECT_NE(j["error"].get<std::string>().find("layer 2"), std::string::npos);

  CmdResult n2 = Shell(Kvinfer() + " generate -m " + model + " -p 'Once upon a time' -n 4 " +
                       "--n 2 --temperature 0.8 >/dev/null");
  EXPECT_EQ(n2.exit_code, 1) << n2.err;
  EXPECT_NE(n2.err.find("kvinfer: error: sample 1: non-finite values (NaN) in layer 2"),
            std::string::npos)
      << n2.err;
  EXPECT_NE(n2.err.find("kvinfer: error: 2 of 2 samples failed"), std::string::npos) << n2.err;
}

TEST(CliFailures, BatchReportsTheFailedRequestAndFinishesTheOthers) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const PoisonedTurns p = MakePoisonedTurns();
  ASSERT_GE(p.token, 0);
  const std::string prompts = Scratch() + "/nan.jsonl";
  std::ofstream(prompts) << "{\"prompt\": \"" << kPromptA << "\", \"chat\": true}\n"
                         << "{\"prompt\": \"" << kPromptB << "\", \"chat\": true}\n";
  const std::string out = Scratch() + "/nan.out";
  CmdResult r = Shell(Kvinfer() + " batch -m " + p.model + " --prompts " + prompts + " -n " +
                      std::to_string(kReplyTokens) + " --kv paged >" + out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(out);
  std::string line;
  std::vector<nlohmann::json> results;
  while (std::getline(in, line)) results.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(results.size(), 2u) << r.err;
  EXPECT_NE(results[0]["finish_reason"], "error");
  EXPECT_FALSE(results[0].contains("error"));
  EXPECT_EQ(results[0]["tokens"].get<std::vector<int32_t>>(), p.a_reply);
  EXPECT_EQ(results[1]["finish_reason"], "error");
  EXPECT_TRUE(results[1]["tokens"].empty());
  const std::string want = "non-finite values (NaN) in the token embedding (token_embd) at "
                           "position ";
  ASSERT_TRUE(results[1]["error"].is_string());
  const std::string error = results[1]["error"].get<std::string>();
  EXPECT_NE(error.find(want), std::string::npos) << error;
  EXPECT_NE(error.find("(token " + std::to_string(p.token) + ")"), std::string::npos) << error;
  EXPECT_NE(r.err.find("2 requests, 1 failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("request 1 failed: " + want), std::string::npos) << r.err;
}

TEST(CliFailures, ChatReportsAFailedTurnAndGoesOn) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const PoisonedTurns p = MakePoisonedTurns();
  ASSERT_GE(p.token, 0);
  const std::string stats = Scratch() + "/nan-chat.json";
  CmdResult r = testing::RunKvinfer("chat -m " + p.model + " -n " + std::to_string(kReplyTokens) +
                                        " --stats-json " + stats,
                                    std::string(kPromptB) + "\n" + kPromptA + "\n/quit\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("kvinfer: error: non-finite values (NaN) in the token embedding "
                       "(token_embd)"),
            std::string::npos)
      << r.err;
  const nlohmann::json j = nlohmann::json::parse(ReadFile(stats));
  ASSERT_EQ(j["turns"].size(), 2u);
  EXPECT_EQ(j["turns"][0]["finish_reason"], "error");
  EXPECT_TRUE(j["turns"][0]["error"].is_string());
  // The failed turn left the conversation: the next is A's turn alone, and
  // A's reply.
  EXPECT_NE(j["turns"][1]["finish_reason"], "error");
  EXPECT_EQ(j["turns"][1]["prompt_tokens"].get<size_t>(), p.a_prompt.size());
  EXPECT_EQ(j["turns"][1]["generated_tokens"].get<size_t>(), p.a_reply.size());
}

}  // namespace
}  // namespace kvinfer
