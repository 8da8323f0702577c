// The smallest GptConfig the model tests use: 2 layers, 2 heads, 32 wide, block 16, vocab 64.
#pragma once

#include "inner/gpt_config.h"

namespace longhaul::test {

inline inner::GptConfig tiny_gpt_config() {
  inner::GptConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 32;
  c.block_size = 16;
  c.vocab_size = 64;
  return c;
}

}  // namespace longhaul::test
