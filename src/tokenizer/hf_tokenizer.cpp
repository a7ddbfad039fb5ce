#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace kvinfer {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// obj[key] when present, else `fallback`; a value of the wrong JSON type is
// malformed input (nlohmann's value() would throw its own type_error).
std::string StringField(const Json& obj, const char* key, const char* fallback) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_string()) {
    Fail(StatusCode::kDataLoss, "tokenizer field \"{}\" is a JSON {} (expected a string)", key,
         it->type_name());
  }
  return it->get<std::string>();
}

bool BoolField(const Json& obj, const char* key, bool fallback) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    Fail(StatusCode::kDataLoss, "tokenizer field \"{}\" is a JSON {} (expected true or false)",
         key, it->type_name());
  }
  return it->get<bool>();
}

constexpr int64_t kMaxVocab = 1 << 22;

// Llama 3's pre-tokenizer regex as its tokenizer.json spells it (after JSON
// unescaping).
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct Source {
  std::string label;  // file name for messages
  std::string text;
};

std::string ReadWholeFile(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    Fail(StatusCode::kNotFound, "{}: tokenizer file not found (or not a regular file)", path);
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) Fail(StatusCode::kNotFound, "{}: cannot open tokenizer file", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Json ParseJson(std::string_view text, const std::string& label) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    Fail(StatusCode::kDataLoss, "{}: malformed JSON: {}", label, e.what());
  }
}

// Ids 0..n-1 with no gaps; `set` records one piece per id.
class VocabBuilder {
 public:
  explicit VocabBuilder(std::string label) : label_(std::move(label)) {}

  void Set(int64_t id, const std::string& piece, TokenType type, bool override_type) {
    if (id < 0 || id >= kMaxVocab) {
      Fail(StatusCode::kDataLoss, "{}: token '{}' has id {} (expected 0..{})", label_, piece, id,
           kMaxVocab - 1);
    }
    const auto i = static_cast<size_t>(id);
    if (i >= tokens_.size()) {
      tokens_.resize(i + 1);
      types_.resize(i + 1, TokenType::kUndefined);
      present_.resize(i + 1, false);
    }
    if (present_[i]) {
      if (tokens_[i] != piece) {
        Fail(StatusCode::kDataLoss, "{}: id {} is given to two tokens: '{}' and '{}'", label_, id,
             tokens_[i], piece);
      }
      if (override_type) types_[i] = type;
      return;
    }
    const auto [it, inserted] = ids_.emplace(piece, id);
    if (!inserted) {
      Fail(StatusCode::kDataLoss, "{}: token '{}' has two ids: {} and {}", label_, piece,
           it->second, id);
    }
    tokens_[i] = piece;
    types_[i] = type;
    present_[i] = true;
  }

  void Finish(TokenizerSpec& spec) {
    if (tokens_.empty()) Fail(StatusCode::kDataLoss, "{}: the vocabulary is empty", label_);
    for (size_t i = 0; i < present_.size(); ++i) {
      if (!present_[i]) {
        Fail(StatusCode::kDataLoss, "{}: no token has id {} (ids must be 0..{} without gaps)",
             label_, i, tokens_.size() - 1);
      }
    }
    spec.tokens = std::move(tokens_);
    spec.types = std::move(types_);
  }

  std::optional<int32_t> Find(const std::string& piece) const {
    const auto it = ids_.find(piece);
    if (it == ids_.end()) return std::nullopt;
    return static_cast<int32_t>(it->second);
  }

 private:
  std::string label_;
  std::vector<std::string> tokens_;
  std::vector<TokenType> types_;
  std::vector<bool> present_;
  std::map<std::string, int64_t> ids_;
};

void ReadVocabObject(const Json& vocab, const std::string& label, VocabBuilder& vb) {
  if (!vocab.is_object()) {
    Fail(StatusCode::kDataLoss, "{}: the vocabulary is a JSON {} (expected an object piece -> id)",
         label, vocab.type_name());
  }
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it->is_number_integer()) {
      Fail(StatusCode::kDataLoss, "{}: vocabulary entry '{}' is a JSON {} (expected an integer id)",
           label, it.key(), it->type_name());
    }
    vb.Set(it->get<int64_t>(), it.key(), TokenType::kNormal, false);
  }
}

void AddMerge(std::string left, std::string right, const std::string& where,
              std::vector<std::string>& merges) {
  if (left.empty() || right.empty() || left.find(' ') != std::string::npos ||
      right.find(' ') != std::string::npos) {
    Fail(StatusCode::kDataLoss,
         "{}: merge '{}' '{}' must be two non-empty pieces without spaces", where, left, right);
  }
  merges.push_back(left + " " + right);
}

// The token string of a config entry: "tok" or {"content": "tok", ...};
// nullopt for absent or null.
std::optional<std::string> SpecialString(const Json& cfg, const char* key, const std::string& label) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    const auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  Fail(StatusCode::kDataLoss, "{}: \"{}\" must be a string or an object with a \"content\" string",
       label, key);
}

// Applies special-token settings (first source that sets a key wins) and the
// GPT-2 defaults. Returns whether a config set add_bos_token.
bool ApplySpecials(const std::vector<Source>& configs, VocabBuilder& vb, TokenizerSpec& spec) {
  struct Special {
    const char* key;
    int32_t* id;
    TokenType type;
  };
  const Special specials[] = {{"bos_token", &spec.bos_id, TokenType::kControl},
                              {"eos_token", &spec.eos_id, TokenType::kControl},
                              {"unk_token", &spec.unk_id, TokenType::kUnknown},
                              {"pad_token", &spec.pad_id, TokenType::kControl}};
  std::optional<bool> add_bos, add_eos;
  for (const Source& src : configs) {
    if (src.text.empty()) continue;
    const Json cfg = ParseJson(src.text, src.label);
    if (!cfg.is_object()) {
      Fail(StatusCode::kDataLoss, "{}: expected a JSON object", src.label);
    }
    for (const Special& s : specials) {
      if (*s.id >= 0) continue;
      if (const auto piece = SpecialString(cfg, s.key, src.label)) {
        const auto id = vb.Find(*piece);
        if (!id) {
          Fail(StatusCode::kDataLoss, "{}: {} '{}' is not in the vocabulary", src.label, s.key,
               *piece);
        }
        *s.id = *id;
      }
    }
    for (auto [key, out] : {std::pair{"add_bos_token", &add_bos}, std::pair{"add_eos_token", &add_eos}}) {
      const auto it = cfg.find(key);
      if (it == cfg.end() || it->is_null() || out->has_value()) continue;
      if (!it->is_boolean()) Fail(StatusCode::kDataLoss, "{}: \"{}\" must be a boolean", src.label, key);
      *out = it->get<bool>();
    }
  }
  // GPT-2 convention: <|endoftext|> begins and ends documents.
  if (const auto eot = vb.Find("<|endoftext|>")) {
    if (spec.bos_id < 0) spec.bos_id = *eot;
    if (spec.eos_id < 0) spec.eos_id = *eot;
  }
  for (const std::string piece : {"<|im_end|>", "<|eot_id|>", "<|end|>"}) {
    if (const auto id = vb.Find(piece)) {
      spec.eot_id = *id;
      break;
    }
  }
  if (add_bos) spec.add_bos = *add_bos;
  if (add_eos) spec.add_eos = *add_eos;
  return add_bos.has_value();
}

void MarkSpecialTypes(TokenizerSpec& spec) {
  for (int32_t id : {spec.bos_id, spec.eos_id, spec.pad_id, spec.eot_id}) {
    if (id >= 0 && spec.types[static_cast<size_t>(id)] == TokenType::kNormal) {
      spec.types[static_cast<size_t>(id)] = TokenType::kControl;
    }
  }
  if (spec.unk_id >= 0 && spec.types[static_cast<size_t>(spec.unk_id)] == TokenType::kNormal) {
    spec.types[static_cast<size_t>(spec.unk_id)] = TokenType::kUnknown;
  }
}

bool IsByteLevel(const Json& j, bool want_regex) {
  if (!j.is_object() || StringField(j, "type", "") != "ByteLevel") return false;
  if (BoolField(j, "add_prefix_space", false)) return false;
  return BoolField(j, "use_regex", true) == want_regex;
}

// Maps tokenizer.json's pre_tokenizer onto a kvinfer pre-tokenizer name.
std::string RecognizePre(const Json& pre, const std::string& label) {
  if (IsByteLevel(pre, true)) return "gpt-2";
  if (pre.is_object() && StringField(pre, "type", "") == "Sequence") {
    const auto seq = pre.find("pretokenizers");
    if (seq != pre.end() && seq->is_array() && seq->size() == 2) {
      const Json& a = (*seq)[0];
      const Json& b = (*seq)[1];
      if (a.is_object() && StringField(a, "type", "") == "Digits" &&
          BoolField(a, "individual_digits", false) && IsByteLevel(b, true)) {
        return "smollm";
      }
      if (a.is_object() && StringField(a, "type", "") == "Split" && IsByteLevel(b, false)) {
        const auto pattern = a.find("pattern");
        if (pattern != a.end() && pattern->is_object() && pattern->contains("Regex") &&
            (*pattern)["Regex"].is_string() &&
            (*pattern)["Regex"].get<std::string>() == kLlama3Regex &&
            StringField(a, "behavior", "") == "Isolated" && !BoolField(a, "invert", false)) {
          return "llama3";
        }
      }
    }
  }
  Fail(StatusCode::kUnimplemented,
       "{}: pre_tokenizer {} is not supported (supported: ByteLevel -> gpt-2, "
       "Sequence[Digits(individual), ByteLevel] -> smollm, Sequence[Split(Llama 3 regex), "
       "ByteLevel] -> llama3)",
       label, pre.dump().substr(0, 300));
}

TokenizerSpec FromHfJson(std::string_view tokenizer_json, const std::vector<Source>& configs,
                         const std::string& label) {
  const Json root = ParseJson(tokenizer_json, label);
  if (!root.is_object() || !root.contains("model") || !root["model"].is_object()) {
    Fail(StatusCode::kDataLoss, "{}: expected a JSON object with a \"model\" object", label);
  }
  const Json& model = root["model"];
  const std::string type = StringField(model, "type", "");
  if (type != "BPE") {
    Fail(StatusCode::kUnimplemented, "{}: model.type '{}' is not supported (only byte-level BPE)",
         label, type);
  }
  if (BoolField(model, "byte_fallback", false)) {
    Fail(StatusCode::kUnimplemented,
         "{}: SentencePiece-style BPE (byte_fallback) is not supported; convert to GGUF", label);
  }
  if (root.contains("normalizer") && !root["normalizer"].is_null()) {
    Fail(StatusCode::kUnimplemented, "{}: normalizer {} is not supported", label,
         root["normalizer"].dump().substr(0, 200));
  }
  TokenizerSpec spec;
  spec.kind = TokenizerKind::kBpe;
  spec.add_space_prefix = false;
  spec.pre = RecognizePre(root.contains("pre_tokenizer") ? root["pre_tokenizer"] : Json(), label);

  VocabBuilder vb(label);
  if (!model.contains("vocab")) Fail(StatusCode::kDataLoss, "{}: missing model.vocab", label);
  ReadVocabObject(model["vocab"], label + " model.vocab", vb);
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    const Json& added = root["added_tokens"];
    if (!added.is_array()) Fail(StatusCode::kDataLoss, "{}: added_tokens must be an array", label);
    for (size_t i = 0; i < added.size(); ++i) {
      const Json& t = added[i];
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
          !t.contains("content") || !t["content"].is_string()) {
        Fail(StatusCode::kDataLoss,
             "{}: added_tokens[{}] needs an integer \"id\" and a string \"content\"", label, i);
      }
      const bool special = BoolField(t, "special", false);
      vb.Set(t["id"].get<int64_t>(), t["content"].get<std::string>(),
             special ? TokenType::kControl : TokenType::kUserDefined, true);
    }
  }

  if (!model.contains("merges") || !model["merges"].is_array()) {
    Fail(StatusCode::kDataLoss, "{}: missing model.merges array", label);
  }
  const Json& merges = model["merges"];
  spec.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const Json& m = merges[i];
    const std::string where = fmt::format("{}: model.merges[{}]", label, i);
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos) Fail(StatusCode::kDataLoss, "{} '{}' has no space", where, s);
      AddMerge(s.substr(0, sp), s.substr(sp + 1), where, spec.merges);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      AddMerge(m[0].get<std::string>(), m[1].get<std::string>(), where, spec.merges);
    } else {
      Fail(StatusCode::kDataLoss, "{} must be a string \"a b\" or a pair [\"a\", \"b\"]", where);
    }
  }

  const bool add_bos_configured = ApplySpecials(configs, vb, spec);
  // A post-processor that prepends the BOS token means the model expects it.
  if (!add_bos_configured) {
    const auto pp = root.find("post_processor");
    if (pp != root.end() && pp->is_object() &&
        StringField(*pp, "type", "") == "TemplateProcessing") {
      const auto single = pp->find("single");
      if (single != pp->end() && single->is_array() && !single->empty()) {
        const Json& first = (*single)[0];
        if (first.is_object() && first.contains("SpecialToken") &&
            first["SpecialToken"].is_object()) {
          const std::string id = StringField(first["SpecialToken"], "id", "");
          if (spec.bos_id >= 0 && vb.Find(id) == spec.bos_id) spec.add_bos = true;
        }
      }
    }
  }
  vb.Finish(spec);
  MarkSpecialTypes(spec);
  return spec;
}

TokenizerSpec FromVocabMerges(std::string_view vocab_json, const std::string& vocab_label,
                              std::string_view merges_txt, const std::string& merges_label,
                              const std::vector<Source>& configs) {
  TokenizerSpec spec;
  spec.kind = TokenizerKind::kBpe;
  spec.pre = "gpt-2";
  spec.add_space_prefix = false;
  VocabBuilder vb(vocab_label);
  ReadVocabObject(ParseJson(vocab_json, vocab_label), vocab_label, vb);

  size_t line_no = 0;
  for (size_t pos = 0; pos < merges_txt.size();) {
    size_t end = merges_txt.find('\n', pos);
    if (end == std::string_view::npos) end = merges_txt.size();
    std::string_view line = merges_txt.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (line_no == 1 && line.starts_with("#version")) continue;
    const size_t sp = line.find(' ');
    const std::string where = fmt::format("{}: line {}", merges_label, line_no);
    if (sp == std::string_view::npos) {
      Fail(StatusCode::kDataLoss, "{}: '{}' is not a merge \"a b\"", where, line.substr(0, 100));
    }
    AddMerge(std::string(line.substr(0, sp)), std::string(line.substr(sp + 1)), where, spec.merges);
  }
  if (spec.merges.empty()) Fail(StatusCode::kDataLoss, "{}: no merges", merges_label);
  ApplySpecials(configs, vb, spec);
  vb.Finish(spec);
  MarkSpecialTypes(spec);
  return spec;
}

std::vector<Source> ConfigsIn(const fs::path& dir) {
  std::vector<Source> out;
  std::error_code ec;
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path p = dir / name;
    if (fs::exists(p, ec)) out.push_back({p.string(), ReadWholeFile(p.string())});
  }
  return out;
}

}  // namespace

TokenizerSpec TokenizerSpecFromHfJson(std::string_view tokenizer_json, std::string_view config_json,
                                      const std::string& label) {
  return FromHfJson(tokenizer_json, {{label + " (config)", std::string(config_json)}}, label);
}

TokenizerSpec TokenizerSpecFromVocabMerges(std::string_view vocab_json, std::string_view merges_txt,
                                           std::string_view config_json, const std::string& label) {
  return FromVocabMerges(vocab_json, label + " (vocab)", merges_txt, label + " (merges)",
                         {{label + " (config)", std::string(config_json)}});
}

TokenizerSpec TokenizerSpecFromHf(const std::string& dir_or_file) {
  std::error_code ec;
  const fs::path in(dir_or_file);
  if (!fs::exists(in, ec)) {
    Fail(StatusCode::kNotFound, "{}: no such tokenizer directory or file", dir_or_file);
  }
  const bool is_dir = fs::is_directory(in, ec);
  const fs::path dir = is_dir ? in : in.parent_path();
  const std::vector<Source> configs = ConfigsIn(dir);

  fs::path tokenizer_json;
  if (is_dir) {
    if (fs::exists(dir / "tokenizer.json", ec)) tokenizer_json = dir / "tokenizer.json";
  } else if (in.filename() != "vocab.json" && in.filename() != "encoder.json") {
    tokenizer_json = in;
  }
  if (!tokenizer_json.empty()) {
    return FromHfJson(ReadWholeFile(tokenizer_json.string()), configs, tokenizer_json.string());
  }

  // vocab.json + merges.txt, or GPT-2's original encoder.json + vocab.bpe.
  fs::path vocab, merges;
  for (const auto& [v, m] : {std::pair{"vocab.json", "merges.txt"},
                             std::pair{"encoder.json", "vocab.bpe"}}) {
    if (!is_dir && in.filename() != v) continue;
    if (fs::exists(dir / v, ec) || !is_dir) {
      vocab = dir / v;
      merges = dir / m;
      break;
    }
  }
  if (vocab.empty()) {
    Fail(StatusCode::kNotFound,
         "{}: no tokenizer.json, vocab.json + merges.txt or encoder.json + vocab.bpe here",
         dir_or_file);
  }
  const std::string vocab_text = ReadWholeFile(vocab.string());
  const std::string merges_text = ReadWholeFile(merges.string());
  return FromVocabMerges(vocab_text, vocab.string(), merges_text, merges.string(), configs);
}

}  // namespace kvinfer
