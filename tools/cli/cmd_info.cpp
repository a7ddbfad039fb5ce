// kvinfer info: what a model file holds.
#include <iostream>

#include <fmt/format.h>

#include "cli.h"
#include "output.h"

namespace kvinfer::cli {
namespace {

void RunInfo(const std::string& path, bool as_json) {
  Model model = LoadModel(path);
  const ModelInfo& i = model.info();
  nlohmann::json types = nlohmann::json::object();
  for (const auto& [name, count] : i.tensor_types) types[name] = count;
  if (as_json) {
    nlohmann::json j = {{"path", i.path},
              {"format", i.format},
              {"architecture", i.architecture},
              {"name", i.name},
              {"n_layers", i.n_layers},
              {"d_model", i.d_model},
              {"n_heads", i.n_heads},
              {"n_kv_heads", i.n_kv_heads},
              {"head_dim", i.head_dim},
              {"d_ff", i.d_ff},
              {"vocab_size", i.vocab_size},
              {"context_length", i.context_length},
              {"rope_dims", i.rope_dims},
              {"rope_theta", i.rope_theta},
              {"norm_eps", i.norm_eps},
              {"tied_output", i.tied_output},
              {"num_parameters", i.num_parameters},
              {"weight_bytes", i.weight_bytes},
              {"tensor_types", types},
              {"tokenizer", i.tokenizer},
              {"chat_template", i.chat_template},
              {"chat_template_recognised", i.chat_template_recognised},
              {"kv_bytes_per_token_f32", i.kv_bytes_per_token_f32},
              {"kv_bytes_per_token_f16", i.kv_bytes_per_token_f16},
              {"kv_bytes_per_token_q8_0", i.kv_bytes_per_token_q8_0},
              {"kv_bytes_per_token_q4_0", i.kv_bytes_per_token_q4_0}};
    WriteStdout(JsonText(j) + "\n");
    return;
  }
  const char* attn = i.n_kv_heads == i.n_heads ? "MHA" : (i.n_kv_heads == 1 ? "MQA" : "GQA");
  std::string type_list;
  for (const auto& [name, count] : i.tensor_types) {
    type_list += fmt::format("{}{} x{}", type_list.empty() ? "" : ", ", name, count);
  }
  const char* format = i.format == "gguf"      ? "GGUF"
                       : i.format == "hf"      ? "Hugging Face checkpoint directory (safetensors)"
                       : i.format == "llama2c" ? "llama2.c checkpoint"
                                               : i.format.c_str();
  fmt::print("file            {} ({})\n", Printable(i.path), format);
  fmt::print("name            {}\n", Printable(i.name));
  fmt::print("architecture    {}\n", i.architecture);
  fmt::print("layers          {}\n", i.n_layers);
  fmt::print("hidden size     {}\n", i.d_model);
  fmt::print("attention       {} heads, {} KV heads ({}), head dim {}\n", i.n_heads, i.n_kv_heads,
             attn, i.head_dim);
  fmt::print("feed-forward    {}\n", i.d_ff);
  fmt::print("vocabulary      {} ({})\n", i.vocab_size, i.tokenizer);
  fmt::print("context         {} tokens\n", i.context_length);
  fmt::print("rope            {} dims, theta {}\n", i.rope_dims, i.rope_theta);
  fmt::print("norm eps        {}\n", i.norm_eps);
  fmt::print("output          {}\n", i.tied_output ? "tied to token embeddings" : "separate matrix");
  fmt::print("parameters      {} ({:.1f} M), {:.1f} MiB of weights\n", i.num_parameters,
             i.num_parameters / 1e6, i.weight_bytes / 1048576.0);
  fmt::print("tensor types    {}\n", type_list);
  fmt::print("chat template   {}{}\n", i.chat_template,
             i.chat_template_recognised ? "" : " (guessed: template not recognised)");
  fmt::print("KV per token    {} bytes (f32), {} bytes (f16), {} bytes (q8_0), {} bytes (q4_0)\n",
             i.kv_bytes_per_token_f32, i.kv_bytes_per_token_f16, i.kv_bytes_per_token_q8_0,
             i.kv_bytes_per_token_q4_0);
  const auto mib = [&](int64_t per_token) {
    return static_cast<double>(per_token) * static_cast<double>(i.context_length) / 1048576.0;
  };
  fmt::print("KV at context   {:.1f} MiB (f32), {:.1f} MiB (f16), {:.1f} MiB (q8_0), {:.1f} MiB "
             "(q4_0)\n",
             mib(i.kv_bytes_per_token_f32), mib(i.kv_bytes_per_token_f16),
             mib(i.kv_bytes_per_token_q8_0), mib(i.kv_bytes_per_token_q4_0));
  }

}  // namespace

void AddInfoCommand(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "info",
      "Describe a model (GGUF file, Hugging Face checkpoint directory or llama2.c .bin): "
      "format, architecture, sizes, tensor types, KV bytes per token");
  AddModelOption(cmd, path.get());
  cmd->add_flag("--json", *as_json, "Print one JSON object");
  cmd->callback([path, as_json] { RunInfo(path->empty() ? DefaultModelPath() : *path, *as_json); });
}

}  // namespace kvinfer::cli
