// Pieces shared by the `kvinfer bench` commands (speed, context, kv-modes,
// memory, concurrency):
// synthetic prompts, statistics, machine and process facts, result files.
// Everything here uses only the public API.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvinfer/kvinfer.h"

namespace kvinfer::cli::bench {

using Clock = std::chrono::steady_clock;

inline double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct MeanStd {
  double mean = 0;
  double stddev = 0;  // sample standard deviation (n - 1); 0 for n < 2
};
MeanStd Summarize(const std::vector<double>& xs);
// The middle value (the mean of the two middle ones for an even count); 0
// when empty.
double Median(std::vector<double> xs);

// `n_tokens` valid token ids: the tokenized text of a short story, repeated
// (BOS first when the vocabulary asks for it). Deterministic per model, so
// runs are comparable. Dies if the model's tokenizer yields no tokens.
std::vector<int32_t> SyntheticPrompt(const Model& model, int n_tokens);

// {"nproc", "cpu_model", "hardware_concurrency", "kernel"}: what the
// numbers were measured on.
nlohmann::json MachineInfo();

// The model's identity and the facts the KV cache depends on.
nlohmann::json ModelJson(const ModelInfo& info);

// The command line of this process, shell-quoted where needed.
std::string CommandLine();

// Resident set size now (VmRSS) and the process's peak so far (VmHWM), in
// bytes; -1 when /proc/self/status cannot be read.
int64_t RssBytes();
int64_t PeakRssBytes();

// Writes `j` (pretty) to `path`, creating parent folders; dies on failure.
void WriteJson(const std::string& path, const nlohmann::json& j);

// Creates `dir` (and parents); dies with the reason on failure.
void MakeDir(const std::string& dir);

// Runs `python3 tools/plot_bench.py <kind> <json> <out_dir>` from the source
// tree; dies when it fails (say --no-plot to skip).
void RunPlot(const std::string& kind, const std::string& json_path, const std::string& out_dir);

// True when stderr is a terminal (progress lines go there only then).
bool StderrIsTty();

// Rewrites the current progress line on stderr ("\r...") when it is a TTY.
void Progress(const std::string& line);
void ProgressDone();

// Rounds to `digits` decimals so result files stay small and diffable.
double Round(double x, int digits = 3);

}  // namespace kvinfer::cli::bench
