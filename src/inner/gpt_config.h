// Architecture of the GPT (nanoGPT's GPTConfig, bias=True by default). The coordinator owns it
// and publishes it as JSON (model.json next to every export); every field is validated.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

namespace longhaul::inner {

struct GptConfig {
  int64_t n_layer = 4;       // transformer blocks
  int64_t n_head = 4;        // attention heads; must divide n_embd
  int64_t n_embd = 128;      // residual stream width
  int64_t block_size = 128;  // max sequence length (tokens); size of the position embedding
  int64_t vocab_size = 256;  // token ids are in [0, vocab_size)
  double dropout = 0.0;      // probability in [0, 1); applied only in training mode
  bool bias = true;          // biases in Linear and LayerNorm (nanoGPT's bias flag)

  // Throws ConfigError naming the field, its value and what was expected.
  void validate() const;
  nlohmann::json to_json() const;
  // Missing keys keep their defaults; unknown keys and wrong types throw ConfigError;
  // the result is validated.
  static GptConfig from_json(const nlohmann::json& j);

  bool operator==(const GptConfig&) const = default;
};

}  // namespace longhaul::inner
