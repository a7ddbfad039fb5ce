// llama.cpp's tokenizer test vectors (models/ggml-vocab-*.gguf.inp/.out),
// shared by tests that check a tokenizer against them.
//
// Format: every input is followed by "\n__ggml_vocab_test__\n" (so an input
// may itself be empty or end in newlines); the .out file has one line of
// space-separated ids per input, without BOS.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace kvinfer::testing {

struct VocabCase {
  std::string input;
  std::vector<int32_t> expected;
};

inline std::string ReadTextFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// `prefix` is the path without ".inp" / ".out".
inline std::vector<VocabCase> LoadVocabCases(const std::string& prefix) {
  const std::string inp = ReadTextFile(prefix + ".inp");
  const std::string out = ReadTextFile(prefix + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<VocabCase> cases;
  size_t start = 0;
  for (size_t hit; (hit = inp.find(sep, start)) != std::string::npos; start = hit + sep.size()) {
    cases.push_back({inp.substr(start, hit - start), {}});
  }
  EXPECT_EQ(start, inp.size()) << "text after the last separator in " << prefix << ".inp";
  std::istringstream lines(out);
  std::string line;
  size_t i = 0;
  while (std::getline(lines, line)) {
    if (i >= cases.size()) {
      ADD_FAILURE() << "more output lines than inputs in " << prefix << ".out";
      break;
    }
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) cases[i].expected.push_back(id);
    ++i;
  }
  EXPECT_EQ(i, cases.size()) << "inputs and output lines differ in number for " << prefix;
  return cases;
}

// Non-printable bytes as \xNN, for failure messages.
inline std::string EscapedText(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace kvinfer::testing
