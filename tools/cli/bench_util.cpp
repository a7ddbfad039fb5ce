#include "bench_util.h"
#include "output.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include <fmt/format.h>

#include "cli.h"

namespace kvinfer::cli::bench {
namespace {

// A story in the TinyStories style: every tokenizer here (SmolLM2's BPE,
// stories260K's 512-token SPM) splits it into ordinary tokens.
constexpr const char* kStory =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park with her friends. One day, she saw a big red ball under a tree. She ran to get it, "
    "but a small dog got there first. The dog wagged its tail and Lily laughed. They played "
    "together all afternoon until the sun went down. ";

// Reads "<key>:   <n> kB" from /proc/self/status; -1 if absent.
int64_t ProcStatusKb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    try {
      return std::stoll(line.substr(prefix.size()));
    } catch (...) {
      return -1;
    }
  }
  return -1;
}

}  // namespace

double Median(std::vector<double> xs) {
  if (xs.empty()) return 0;
  std::sort(xs.begin(), xs.end());
  const size_t n = xs.size();
  return n % 2 == 1 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

MeanStd Summarize(const std::vector<double>& xs) {
  MeanStd r;
  if (xs.empty()) return r;
  double sum = 0;
  for (double x : xs) sum += x;
  r.mean = sum / static_cast<double>(xs.size());
  if (xs.size() < 2) return r;
  double ss = 0;
  for (double x : xs) ss += (x - r.mean) * (x - r.mean);
  r.stddev = std::sqrt(ss / static_cast<double>(xs.size() - 1));
  return r;
}

std::vector<int32_t> SyntheticPrompt(const Model& model, int n_tokens) {
  StatusOr<std::vector<int32_t>> first = model.Tokenize(kStory, /*add_special=*/true);
  DieIf(first.status(), "tokenize the synthetic prompt");
  StatusOr<std::vector<int32_t>> body = model.Tokenize(kStory, /*add_special=*/false);
  DieIf(body.status(), "tokenize the synthetic prompt");
  if (first->empty() || body->empty()) Die("the model's tokenizer turns the synthetic prompt into no tokens");
  std::vector<int32_t> ids = std::move(first).value();
  while (static_cast<int>(ids.size()) < n_tokens) ids.insert(ids.end(), body->begin(), body->end());
  ids.resize(static_cast<size_t>(n_tokens));
  return ids;
}

nlohmann::json MachineInfo() {
  std::string cpu = "unknown";
  {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("model name", 0) != 0) continue;
      const size_t colon = line.find(':');
      if (colon != std::string::npos) cpu = line.substr(line.find_first_not_of(" \t", colon + 1));
      break;
    }
  }
  std::string kernel;
  utsname u{};
  if (uname(&u) == 0) kernel = fmt::format("{} {} {}", u.sysname, u.release, u.machine);
  const long nproc = sysconf(_SC_NPROCESSORS_ONLN);
  return {{"nproc", nproc},
          {"hardware_concurrency", std::thread::hardware_concurrency()},
          {"cpu_model", cpu},
          {"kernel", kernel}};
}

nlohmann::json ModelJson(const ModelInfo& i) {
  return {{"path", i.path},
          {"file", std::filesystem::path(i.path).filename().string()},
          {"name", i.name},
          {"architecture", i.architecture},
          {"num_parameters", i.num_parameters},
          {"weight_bytes", i.weight_bytes},
          {"n_layers", i.n_layers},
          {"n_kv_heads", i.n_kv_heads},
          {"head_dim", i.head_dim},
          {"vocab_size", i.vocab_size},
          {"context_length", i.context_length},
          {"kv_bytes_per_token_f32", i.kv_bytes_per_token_f32}};
}

std::string CommandLine() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string raw{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::string out;
  size_t start = 0;
  while (start < raw.size()) {
    size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    const std::string arg = raw.substr(start, end - start);
    start = end + 1;
    if (!out.empty()) out += ' ';
    const bool plain = !arg.empty() && arg.find_first_not_of(
                                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789_-./=:,+@%") == std::string::npos;
    if (plain) {
      out += arg;
    } else {
      out += '\'';
      for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    }
  }
  return out;
}

int64_t RssBytes() {
  const int64_t kb = ProcStatusKb("VmRSS");
  return kb < 0 ? -1 : kb * 1024;
}

int64_t PeakRssBytes() {
  const int64_t kb = ProcStatusKb("VmHWM");
  return kb < 0 ? -1 : kb * 1024;
}

void MakeDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) Die(fmt::format("cannot create the output folder '{}': {}", dir, ec.message()));
}

void WriteJson(const std::string& path, const nlohmann::json& j) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) MakeDir(parent.string());
  WriteOutputFile(path, JsonText(j, 1) + "\n");
}

void RunPlot(const std::string& kind, const std::string& json_path, const std::string& out_dir) {
  const std::string script = std::string(KVINFER_SOURCE_DIR) + "/tools/plot_bench.py";
  if (!std::filesystem::exists(script)) {
    Die(fmt::format("plot script '{}' not found (pass --no-plot to skip the figures)", script));
  }
  auto quote = [](const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  const std::string cmd = fmt::format("/usr/bin/python3 {} {} {} {}", quote(script), kind,
                                      quote(json_path), quote(out_dir));
  std::fflush(stdout);
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    Die(fmt::format("plotting failed (exit status {}): {} — the results are in '{}'; pass "
                    "--no-plot to skip the figures",
                    rc, cmd, json_path));
  }
}

bool StderrIsTty() { return isatty(STDERR_FILENO) == 1; }

void Progress(const std::string& line) {
  if (!StderrIsTty()) return;
  std::fprintf(stderr, "\r\033[K%s", line.c_str());
  std::fflush(stderr);
}

void ProgressDone() {
  if (!StderrIsTty()) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

double Round(double x, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(x * scale) / scale;
}

}  // namespace kvinfer::cli::bench
