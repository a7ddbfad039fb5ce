// Shared test helpers: paths to model files (and failing, with how to get
// them, when they are absent), and running the kvinfer binary as a user would.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

namespace kvinfer::testing {

inline std::string SharedModels() { return std::string(KVINFER_SOURCE_DIR) + "/../shared/models"; }
inline std::string StoriesGguf() { return SharedModels() + "/stories260K/stories260K.gguf"; }
inline std::string DefaultModel() {
  return std::string(KVINFER_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}
inline std::string GoldenDir() { return std::string(KVINFER_SOURCE_DIR) + "/tests/goldens"; }

// How to get a missing test fixture, from where it lives.
inline std::string HowToGet(const std::string& path) {
  if (path.find("/../shared/") != std::string::npos) {
    return "it is part of ../shared/ (check out the shared folder beside the repository; "
           "see ../shared/models/README.md)";
  }
  if (path.find("gpt2") != std::string::npos) return "run ./scripts/make-gpt2-fixtures.sh";
  return "run ./scripts/setup.sh (it fetches the default model and makes the generated fixtures)";
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct CmdResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `build/kvinfer <args>` through the shell with `stdin_text` on its
// standard input. File names are unique per process and call: ctest runs
// tests in parallel processes.
inline CmdResult RunKvinfer(const std::string& args, const std::string& stdin_text = "") {
  static int counter = 0;
  const std::string prefix = ::testing::TempDir() + "/kvinfer_cmd_" + std::to_string(getpid()) +
                             "_" + std::to_string(counter++);
  const std::string in_path = prefix + "_in.txt";
  const std::string out_path = prefix + "_out.txt";
  const std::string err_path = prefix + "_err.txt";
  std::ofstream(in_path) << stdin_text;
  const std::string cmd = std::string(KVINFER_BINARY_DIR) + "/kvinfer " + args + " <" + in_path +
                          " >" + out_path + " 2>" + err_path;
  const int status = std::system(cmd.c_str());
  CmdResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  for (const std::string& p : {in_path, out_path, err_path}) std::filesystem::remove(p);
  return r;
}

}  // namespace kvinfer::testing

// Fails the test (fatally: it returns) when `path` does not exist, naming
// the file and how to get it. Every fixture is provided by ./scripts/setup.sh
// and the ../shared/ checkout beside the repository, so a missing one is an
// error in the setup, not a reason to skip.
#define KVINFER_REQUIRE_FILE(path)                                                   \
  do {                                                                               \
    if (!std::filesystem::exists(path)) {                                            \
      GTEST_FAIL() << "missing fixture " << (path) << " — "                         \
                   << ::kvinfer::testing::HowToGet(path);                            \
    }                                                                                \
  } while (0)
