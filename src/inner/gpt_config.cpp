#include "inner/gpt_config.h"

#include <string>

#include "common/error.h"

namespace longhaul::inner {
namespace {

void require_positive(const char* field, int64_t v) {
  if (v <= 0)
    throw ConfigError(
        detail::concat("model config: ", field, " = ", v, ", expected an integer > 0"));
}

}  // namespace

void GptConfig::validate() const {
  require_positive("n_layer", n_layer);
  require_positive("n_head", n_head);
  require_positive("n_embd", n_embd);
  require_positive("block_size", block_size);
  require_positive("vocab_size", vocab_size);
  if (n_embd % n_head != 0)
    throw ConfigError(detail::concat("model config: n_embd = ", n_embd,
                                     " is not divisible by n_head = ", n_head,
                                     " (expected n_embd % n_head == 0)"));
  if (!(dropout >= 0.0 && dropout < 1.0))
    throw ConfigError(
        detail::concat("model config: dropout = ", dropout, ", expected a probability in [0, 1)"));
}

nlohmann::json GptConfig::to_json() const {
  return {{"n_layer", n_layer},
          {"n_head", n_head},
          {"n_embd", n_embd},
          {"block_size", block_size},
          {"vocab_size", vocab_size},
          {"dropout", dropout},
          {"bias", bias}};
}

GptConfig GptConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object())
    throw ConfigError("model config: expected a JSON object, got " + std::string(j.type_name()));
  GptConfig c;
  for (const auto& [key, v] : j.items()) {
    auto int_field = [&](int64_t& dst) {
      if (!v.is_number_integer())
        throw ConfigError(
            detail::concat("model config: ", key, " = ", v.dump(), ", expected an integer"));
      dst = v.get<int64_t>();
    };
    if (key == "n_layer")
      int_field(c.n_layer);
    else if (key == "n_head")
      int_field(c.n_head);
    else if (key == "n_embd")
      int_field(c.n_embd);
    else if (key == "block_size")
      int_field(c.block_size);
    else if (key == "vocab_size")
      int_field(c.vocab_size);
    else if (key == "dropout") {
      if (!v.is_number())
        throw ConfigError(
            detail::concat("model config: dropout = ", v.dump(), ", expected a number"));
      c.dropout = v.get<double>();
    } else if (key == "bias") {
      if (!v.is_boolean())
        throw ConfigError(
            detail::concat("model config: bias = ", v.dump(), ", expected true or false"));
      c.bias = v.get<bool>();
    } else {
      throw ConfigError(detail::concat(
          "model config: unknown key '", key,
          "' (expected n_layer, n_head, n_embd, block_size, vocab_size, dropout, bias)"));
    }
  }
  c.validate();
  return c;
}

}  // namespace longhaul::inner
