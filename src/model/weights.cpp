#include "model/weights.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "ops/ops.h"

namespace kvinfer {
namespace {

class Binder {
 public:
  Binder(const GgufFile& file, ModelWeights& w) : file_(file), w_(w) {}

  const GgufTensorInfo& Get(const std::string& name) const {
    const GgufTensorInfo* t = file_.FindTensor(name);
    if (t == nullptr) Fail(StatusCode::kDataLoss, "{}: missing tensor '{}'", file_.path(), name);
    return *t;
  }

  WeightView Matrix(const std::string& name, int64_t rows, int64_t cols) {
    const GgufTensorInfo& t = Get(name);
    if (t.dims.size() != 2 || t.dims[0] != static_cast<uint64_t>(cols) ||
        t.dims[1] != static_cast<uint64_t>(rows)) {
      Fail(StatusCode::kDataLoss, "{}: tensor '{}' has shape [{}], expected [{}, {}]",
           file_.path(), name, fmt::join(t.dims, ", "), cols, rows);
    }
    if (!IsSupportedWeight(t.type)) {
      Fail(StatusCode::kUnimplemented,
           "{}: tensor '{}' has type {}, which kvinfer cannot compute with (supported: f32, f16, "
           "bf16, q8_0, q4_0, q4_1)",
           file_.path(), name, DTypeName(t.type));
    }
    WeightView v;
    v.type = t.type;
    v.rows = rows;
    v.cols = cols;
    v.data = t.data;
    v.row_bytes = RowBytes(GetDTypeInfo(t.type), static_cast<uint64_t>(cols));
    Count(t);
    return v;
  }

  // A 1-D vector as f32 (converted once if stored in another type).
  const float* Vector(const std::string& name, int64_t n) {
    const GgufTensorInfo& t = Get(name);
    if (t.dims.size() != 1 || t.dims[0] != static_cast<uint64_t>(n)) {
      Fail(StatusCode::kDataLoss, "{}: tensor '{}' has shape [{}], expected [{}]", file_.path(),
           name, fmt::join(t.dims, ", "), n);
    }
    Count(t);
    if (t.type == DType::kF32) return reinterpret_cast<const float*>(t.data);
    if (!IsSupportedWeight(t.type)) {
      Fail(StatusCode::kUnimplemented, "{}: tensor '{}' has unsupported type {}", file_.path(),
           name, DTypeName(t.type));
    }
    WeightView row{t.type, 1, n, t.data, RowBytes(GetDTypeInfo(t.type), n)};
    AlignedBuffer& buf = w_.owned.emplace_back(static_cast<size_t>(n) * sizeof(float));
    ops::DequantizeRow(row, 0, buf.as<float>());
    return buf.as<float>();
  }

 private:
  void Count(const GgufTensorInfo& t) {
    w_.num_parameters += static_cast<int64_t>(t.num_elements);
    w_.weight_bytes += static_cast<int64_t>(t.num_bytes);
  }

  const GgufFile& file_;
  ModelWeights& w_;
};

}  // namespace

void SplitFusedQkv(const WeightView& qkv, const float* bias, int d, LayerWeights& L) {
  KVINFER_CHECK(qkv.rows == 3 * static_cast<int64_t>(d));
  WeightView* parts[3] = {&L.wq, &L.wk, &L.wv};
  const float** biases[3] = {&L.bq, &L.bk, &L.bv};
  for (int i = 0; i < 3; ++i) {
    *parts[i] = qkv;
    parts[i]->rows = d;
    parts[i]->data = qkv.row(static_cast<int64_t>(i) * d);
    *biases[i] = bias + static_cast<ptrdiff_t>(i) * d;
  }
}

void PackWeights(ModelWeights& w) {
  auto in_owned = [&w](const WeightView& v) {
    const auto* p = static_cast<const std::byte*>(v.data);
    for (const AlignedBuffer& b : w.owned) {
      if (p >= b.data() && p < b.data() + b.size()) return true;
    }
    return false;
  };
  auto pack = [&](WeightView& v) {
    if (v.data == nullptr || v.packed != nullptr) return;
    AlignedBuffer buf = ops::PackWeights(v);
    if (buf.size() == 0) return;
    // Dropped as soon as copied: the peak stays near one copy too.
    if (!in_owned(v)) MappedFile::DropPages(v.data, static_cast<size_t>(v.rows) * v.row_bytes);
    v.packed = buf.data();
    w.owned.push_back(std::move(buf));
  };
  for (LayerWeights& L : w.layers) {
    for (WeightView* v : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) pack(*v);
  }
  pack(w.output);
}

ModelWeights BindLlamaWeights(const GgufFile& file, const ModelConfig& c) {
  ModelWeights w;
  Binder b(file, w);
  w.token_embd = b.Matrix("token_embd.weight", c.vocab_size, c.d_model);
  w.output = c.tied_output ? w.token_embd : b.Matrix("output.weight", c.vocab_size, c.d_model);
  w.output_norm = b.Vector("output_norm.weight", c.d_model);
  w.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[l];
    const std::string p = fmt::format("blk.{}.", l);
    L.attn_norm = b.Vector(p + "attn_norm.weight", c.d_model);
    L.wq = b.Matrix(p + "attn_q.weight", c.q_dim(), c.d_model);
    L.wk = b.Matrix(p + "attn_k.weight", c.kv_dim(), c.d_model);
    L.wv = b.Matrix(p + "attn_v.weight", c.kv_dim(), c.d_model);
    L.wo = b.Matrix(p + "attn_output.weight", c.d_model, c.q_dim());
    L.ffn_norm = b.Vector(p + "ffn_norm.weight", c.d_model);
    L.w_gate = b.Matrix(p + "ffn_gate.weight", c.d_ff, c.d_model);
    L.w_up = b.Matrix(p + "ffn_up.weight", c.d_ff, c.d_model);
    L.w_down = b.Matrix(p + "ffn_down.weight", c.d_model, c.d_ff);
  }
  return w;
}

ModelWeights BindGpt2Weights(const GgufFile& file, const ModelConfig& c) {
  KVINFER_CHECK(c.n_kv_heads == c.n_heads && c.q_dim() == c.d_model);
  ModelWeights w;
  Binder b(file, w);
  const int d = c.d_model;
  w.token_embd = b.Matrix("token_embd.weight", c.vocab_size, d);
  w.position_embd = b.Matrix("position_embd.weight", c.context_length, d);
  w.output = c.tied_output ? w.token_embd : b.Matrix("output.weight", c.vocab_size, d);
  w.output_norm = b.Vector("output_norm.weight", d);
  w.output_norm_bias = b.Vector("output_norm.bias", d);
  w.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[l];
    const std::string p = fmt::format("blk.{}.", l);
    L.attn_norm = b.Vector(p + "attn_norm.weight", d);
    L.attn_norm_bias = b.Vector(p + "attn_norm.bias", d);
    SplitFusedQkv(b.Matrix(p + "attn_qkv.weight", 3 * d, d), b.Vector(p + "attn_qkv.bias", 3 * d),
                  d, L);
    L.wo = b.Matrix(p + "attn_output.weight", d, d);
    L.bo = b.Vector(p + "attn_output.bias", d);
    L.ffn_norm = b.Vector(p + "ffn_norm.weight", d);
    L.ffn_norm_bias = b.Vector(p + "ffn_norm.bias", d);
    L.w_up = b.Matrix(p + "ffn_up.weight", c.d_ff, d);
    L.b_up = b.Vector(p + "ffn_up.bias", c.d_ff);
    L.w_down = b.Matrix(p + "ffn_down.weight", d, c.d_ff);
    L.b_down = b.Vector(p + "ffn_down.bias", d);
  }
  return w;
}

}  // namespace kvinfer
