// kvinfer kv-size: how much memory a model's KV cache needs.
//
// Models come from --model (a GGUF file, a Hugging Face checkpoint directory
// or a llama2.c .bin; metadata only), --config config.json
// (Hugging Face) or --preset NAME; each flag may repeat, and every model
// becomes one row of the table (models first, then configs, then presets).
//
// --json prints one object:
//   {"seq_len", "batch", "dtype", "block_size", "models": [ {per model} ]}
// and, when exactly one model was asked for, that model's "name",
// "bytes_per_token" and "total_bytes" at the top level as well, so scripts
// can read a single answer without indexing.
//
// --plot FILE.png writes the memory-vs-sequence-length series to a temporary
// JSON file and runs tools/plot_kv_size.py on it with /usr/bin/python3
// ($KVINFER_PYTHON overrides the interpreter).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "cli.h"
#include "kvinfer/kv_size.h"
#include "output.h"

extern char** environ;

namespace kvinfer::cli {
namespace {

struct KvSizeFlags {
  std::vector<std::string> models;
  std::vector<std::string> configs;
  std::vector<std::string> presets;
  int64_t seq_len = 4096;
  int64_t batch = 1;
  std::string dtype = "f16";
  int64_t block_size = 1;
  bool as_json = false;
  bool list_presets = false;
  std::string plot;
};

struct Entry {
  KvSizeSpec spec;
  std::string source;  // "preset", or the file it was read from
};

// The value, or exit with the error's message.
template <typename T>
T OrDie(StatusOr<T> v) {
  if (!v.ok()) Die(v.status().message());
  return std::move(v).value();
}

std::vector<Entry> LoadSpecs(const KvSizeFlags& f) {
  std::vector<Entry> out;
  // --model takes what every command's --model takes: a GGUF file (its
  // metadata), a Hugging Face checkpoint directory (its config.json) or a
  // llama2.c checkpoint (its header). No weights are read. Checkpoint
  // directories join the --config rows.
  std::vector<std::string> configs = f.configs;
  for (const std::string& path : f.models) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      configs.push_back(path);
      continue;
    }
    out.push_back({OrDie(KvSizeSpecForModel(path)), path});
  }
  for (const std::string& path : configs) {
    std::error_code ec;
    const bool dir = std::filesystem::is_directory(path, ec);
    const std::string source = dir ? (std::filesystem::path(path) / "config.json").string() : path;
    // A directory as --model is checked to be a checkpoint directory.
    const bool as_model =
        dir && std::find(f.models.begin(), f.models.end(), path) != f.models.end();
    out.push_back({OrDie(as_model ? KvSizeSpecForModel(path) : KvSizeSpecForConfigFile(path)),
                   source});
  }
  for (const std::string& name : f.presets) {
    out.push_back({OrDie(KvSizeSpecForPreset(name)), "preset"});
  }
  return out;
}

// 1342177280 -> "1,342,177,280"
std::string Grouped(uint64_t v) {
  std::string digits = std::to_string(v);
  std::string out;
  const size_t n = digits.size();
  for (size_t i = 0; i < n; ++i) {
    if (i > 0 && (n - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

KvSizeResult ComputeOrDie(const KvSizeSpec& spec, const KvSizeOptions& o) {
  StatusOr<KvSizeResult> r = KvSizeFor(spec, o);
  if (!r.ok()) Die(fmt::format("{}: {}", spec.name, r.status().message()));
  return std::move(r).value();
}

std::string HeadDimText(const KvSizeSpec& s) {
  if (s.mla) return fmt::format("{}+{}", s.kv_lora_rank, s.qk_rope_head_dim);
  if (s.v_head_dim != s.head_dim) return fmt::format("{}/{}", s.head_dim, s.v_head_dim);
  return std::to_string(s.head_dim);
}

std::string WindowText(const KvSizeSpec& s) {
  if (s.sliding_window == 0) return "-";
  if (s.n_window_layers == s.n_layers) return std::to_string(s.sliding_window);
  return fmt::format("{} ({}/{} layers)", s.sliding_window, s.n_window_layers, s.n_layers);
}

nlohmann::json ModelJson(const Entry& e, const KvSizeResult& r) {
  const KvSizeSpec& s = e.spec;
  nlohmann::json j = {{"name", s.name},
                      {"source", e.source},
                      {"attention", std::string(KvAttentionName(s.attention()))},
                      {"n_layers", s.n_layers},
                      {"n_heads", s.n_heads},
                      {"n_kv_heads", s.mla ? 1 : s.n_kv_heads},
                      {"head_dim", s.head_dim},
                      {"v_head_dim", s.v_head_dim},
                      {"sliding_window", s.sliding_window},
                      {"n_window_layers", s.n_window_layers},
                      {"context_length", s.context_length},
                      {"bytes_per_token", r.bytes_per_token},
                      {"bytes_per_token_per_layer", r.bytes_per_token_per_layer},
                      {"tokens_per_sequence", r.tokens_per_sequence},
                      {"window_tokens_per_sequence", r.window_tokens_per_sequence},
                      {"total_bytes", r.total_bytes},
                      {"k_bytes", r.breakdown.k_bytes},
                      {"v_bytes", r.breakdown.v_bytes},
                      {"latent_bytes", r.breakdown.latent_bytes},
                      {"scale_bytes", r.breakdown.scale_bytes},
                      {"exceeds_context", r.exceeds_context}};
  if (s.mla) {
    j["kv_lora_rank"] = s.kv_lora_rank;
    j["qk_rope_head_dim"] = s.qk_rope_head_dim;
  }
  return j;
}

void PrintTable(const std::vector<Entry>& entries, const std::vector<KvSizeResult>& results,
                const KvSizeOptions& o) {
  const std::string total_head = fmt::format("total @ {} x {}", o.seq_len, o.batch);
  std::vector<std::vector<std::string>> rows = {{"model", "attention", "layers", "kv heads",
                                                 "head dim", "window", "bytes/token", total_head,
                                                 "total bytes"}};
  bool any_over_context = false;
  for (size_t i = 0; i < entries.size(); ++i) {
    const KvSizeSpec& s = entries[i].spec;
    const KvSizeResult& r = results[i];
    std::string name = s.name;
    if (r.exceeds_context) {
      name += " *";
      any_over_context = true;
    }
    rows.push_back(
        {name, std::string(KvAttentionName(s.attention())), std::to_string(s.n_layers),
         s.mla ? "1 (latent)" : std::to_string(s.n_kv_heads), HeadDimText(s), WindowText(s),
         fmt::format("{} ({})", Grouped(r.bytes_per_token), FormatBytes(r.bytes_per_token)),
         FormatBytes(r.total_bytes), Grouped(r.total_bytes)});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  fmt::print("KV cache: {} tokens x {} sequence{}, {}, {}\n\n", o.seq_len, o.batch,
             o.batch == 1 ? "" : "s", KvDtypeName(o.dtype),
             o.block_size == 1 ? std::string("contiguous (no block rounding)")
                               : fmt::format("paged, {} tokens per block", o.block_size));
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string line;
    for (size_t c = 0; c < rows[r].size(); ++c) {
      // Text columns left-aligned, numbers right-aligned.
      const bool left = c <= 1 || c == 5;
      line += left ? fmt::format("{:<{}}", rows[r][c], width[c])
                   : fmt::format("{:>{}}", rows[r][c], width[c]);
      if (c + 1 < rows[r].size()) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    fmt::print("{}\n", line);
    if (r == 0) {
      size_t total = 0;
      for (size_t w : width) total += w + 2;
      fmt::print("{}\n", std::string(total - 2, '-'));
    }
  }
  if (entries.size() == 1) {
    const KvSizeBreakdown& b = results[0].breakdown;
    if (entries[0].spec.mla) {
      fmt::print("\nlatent {}, rope key {}, scales {}\n", FormatBytes(b.latent_bytes),
                 FormatBytes(b.k_bytes), FormatBytes(b.scale_bytes));
    } else {
      fmt::print("\nK {}, V {}, scales {}\n", FormatBytes(b.k_bytes), FormatBytes(b.v_bytes),
                 FormatBytes(b.scale_bytes));
    }
  }
  bool any_window = false;
  for (size_t i = 0; i < entries.size(); ++i) {
    any_window = any_window || results[i].window_tokens_per_sequence > 0;
  }
  if (any_window) {
    fmt::print("\nbytes/token is at full attention; windowed layers keep at most the window.\n");
  }
  if (any_over_context) {
    fmt::print("* sequence length exceeds the model's trained context\n");
  }
}

// seq_len values for the plot: log-spaced from 1 to the model's context,
// plus the window edge so the plateau starts where it should.
std::vector<int64_t> PlotPoints(const KvSizeSpec& s, int64_t seq_len) {
  const int64_t top = s.context_length > 0 ? s.context_length : std::max<int64_t>(seq_len, 4096);
  std::set<int64_t> pts;
  constexpr int kSteps = 64;
  const double log_top = std::log(static_cast<double>(top));
  for (int i = 0; i <= kSteps; ++i) {
    pts.insert(std::max<int64_t>(1, std::llround(std::exp(log_top * i / kSteps))));
  }
  if (s.sliding_window > 0 && s.sliding_window < top) pts.insert(s.sliding_window);
  pts.insert(top);
  return {pts.begin(), pts.end()};
}

void DrawPlot(const std::vector<Entry>& entries, const KvSizeOptions& o, const std::string& png) {
  const char* env_py = std::getenv("KVINFER_PYTHON");
  const std::string python = env_py != nullptr && *env_py != '\0' ? env_py : "/usr/bin/python3";
  const std::string script = std::string(KVINFER_SOURCE_DIR) + "/tools/plot_kv_size.py";
  if (access(python.c_str(), X_OK) != 0) {
    Die(
        fmt::format("--plot needs Python 3 with matplotlib: '{}' is not an executable "
                    "(set KVINFER_PYTHON to another interpreter)",
                    python));
  }
  if (!std::filesystem::exists(script)) Die(fmt::format("--plot: script '{}' is missing", script));

  nlohmann::json data = {{"dtype", std::string(KvDtypeName(o.dtype))},
                         {"batch", o.batch},
                         {"block_size", o.block_size},
                         {"seq_len", o.seq_len},
                         {"models", nlohmann::json::array()}};
  for (const Entry& e : entries) {
    nlohmann::json xs = nlohmann::json::array();
    nlohmann::json ys = nlohmann::json::array();
    for (int64_t n : PlotPoints(e.spec, o.seq_len)) {
      KvSizeOptions p = o;
      p.seq_len = n;
      xs.push_back(n);
      ys.push_back(ComputeOrDie(e.spec, p).total_bytes);
    }
    data["models"].push_back({{"name", e.spec.name},
                              {"attention", std::string(KvAttentionName(e.spec.attention()))},
                              {"context_length", e.spec.context_length},
                              {"sliding_window", e.spec.sliding_window},
                              {"seq_len", xs},
                              {"total_bytes", ys}});
  }
  const std::string data_path =
      (std::filesystem::temp_directory_path() / fmt::format("kvinfer-kv-size-{}.json", getpid()))
          .string();
  WriteOutputFile(data_path, JsonText(data, -1));
  // Spawned directly (no shell), so paths need no quoting.
  std::vector<std::string> args = {python, script, data_path, png};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  pid_t pid = 0;
  const int spawn_err = posix_spawn(&pid, python.c_str(), nullptr, nullptr, argv.data(), environ);
  int status = 0;
  if (spawn_err == 0) waitpid(pid, &status, 0);
  std::error_code ec;
  std::filesystem::remove(data_path, ec);
  if (spawn_err != 0)
    Die(fmt::format("--plot: cannot run '{}': {}", python, std::strerror(spawn_err)));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    Die(code == 3
            ? fmt::format("--plot needs matplotlib for '{}' (apt-get install python3-matplotlib)",
                          python)
            : fmt::format("--plot: {} {} failed (exit status {})", python, script, code));
  }
  std::fprintf(stderr, "kvinfer: wrote %s\n", png.c_str());
}

void RunKvSize(const KvSizeFlags& f) {
  if (f.list_presets) {
    for (const std::string& name : KvSizePresetNames()) fmt::print("{}\n", name);
    return;
  }
  KvSizeOptions o;
  o.seq_len = f.seq_len;
  o.batch = f.batch;
  o.block_size = f.block_size;
  o.dtype = OrDie(KvDtypeFromName(f.dtype));
  std::vector<Entry> entries = LoadSpecs(f);
  if (entries.empty()) {
    std::string known;
    for (const std::string& n : KvSizePresetNames()) known += (known.empty() ? "" : ", ") + n;
    Die(
        fmt::format("kv-size needs a model: --model FILE.gguf|DIR|FILE.bin, --config config.json or "
                    "--preset NAME (presets: {})",
                    known));
  }
  std::vector<KvSizeResult> results;
  for (const Entry& e : entries) results.push_back(ComputeOrDie(e.spec, o));

  if (!f.plot.empty()) DrawPlot(entries, o, f.plot);

  if (f.as_json) {
    nlohmann::json j = {{"seq_len", o.seq_len},
                        {"batch", o.batch},
                        {"dtype", std::string(KvDtypeName(o.dtype))},
                        {"block_size", o.block_size},
                        {"models", nlohmann::json::array()}};
    for (size_t i = 0; i < entries.size(); ++i)
      j["models"].push_back(ModelJson(entries[i], results[i]));
    if (entries.size() == 1) {
      j["name"] = entries[0].spec.name;
      j["bytes_per_token"] = results[0].bytes_per_token;
      j["total_bytes"] = results[0].total_bytes;
    }
    WriteStdout(JsonText(j) + "\n");
    return;
  }
  PrintTable(entries, results, o);
}

}  // namespace

void AddKvSizeCommand(CLI::App& app) {
  auto f = std::make_shared<KvSizeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "kv-size",
      "KV-cache memory calculator: bytes per token and totals for a model file, a Hugging Face "
      "config.json or a named preset (MHA, GQA, MQA, MLA, sliding windows)");
  cmd->add_option("--model,-m", f->models,
                  "Model: GGUF file, Hugging Face checkpoint directory or llama2.c .bin (metadata "
                  "only; repeatable)");
  cmd->add_option("--config,-c", f->configs,
                  "Hugging Face config.json, or a folder holding one (repeatable)");
  std::string preset_help = "Named preset (repeatable, or comma-separated): ";
  for (const std::string& n : KvSizePresetNames()) preset_help += n + " ";
  cmd->add_option("--preset,-p", f->presets, preset_help)->delimiter(',');
  cmd->add_option("--seq-len,-n", f->seq_len, "Tokens per sequence")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--batch,-b", f->batch, "Sequences in the batch")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32))
      ->capture_default_str();
  cmd->add_option("--dtype", f->dtype, "Cache element type: " + KvDtypeNames())
      ->capture_default_str();
  cmd->add_option("--block-size", f->block_size,
                  "Paged KV: tokens per block, sizes round up to whole blocks (1 = contiguous)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_flag("--json", f->as_json, "Print one JSON object");
  cmd->add_option("--plot", f->plot,
                  "Draw memory against sequence length to this PNG (needs python3 + matplotlib)");
  cmd->add_flag("--list-presets", f->list_presets, "List the preset names and exit");
  cmd->callback([f] { RunKvSize(*f); });
}

}  // namespace kvinfer::cli
