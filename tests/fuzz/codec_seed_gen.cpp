// Writes the codec fuzz seed corpus into the directory given as argv[1]: small valid payloads
// of every encoding, sizes 0 / 1 / odd / multi-chunk, with and without the zstd stage.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "transport/codec.h"

int main(int argc, char** argv) {
  using namespace longhaul::transport;
  if (argc != 2) {
    std::fprintf(stderr, "usage: codec_seed_gen DIR\n");
    return 2;
  }
  std::mt19937 rng(42);
  std::normal_distribution<float> d(0.0f, 0.01f);
  int written = 0;
  for (Encoding e :
       {Encoding::kFp32, Encoding::kBf16, Encoding::kFp16, Encoding::kInt8, Encoding::kInt4}) {
    for (uint64_t n : {0u, 1u, 77u, 600u}) {
      for (int zstd : {0, 3}) {
        std::vector<float> x(n);
        for (uint64_t i = 0; i < n; ++i) x[i] = (i % 32 < 16) ? 0.0f : d(rng);  // compressible
        Manifest m;
        m.add("w", {static_cast<int64_t>(n)});
        auto p = encode(
            x, m, {.encoding = e, .block_size = 16, .zstd_level = zstd, .chunk_elements = 256});
        std::string path = std::string(argv[1]) + "/" + std::string(encoding_name(e)) + "_n" +
                           std::to_string(n) + "_z" + std::to_string(zstd) + ".bin";
        std::ofstream(path, std::ios::binary)
            .write(reinterpret_cast<const char*>(p.data()), p.size());
        ++written;
      }
    }
  }
  std::printf("wrote %d seeds to %s\n", written, argv[1]);
  return 0;
}
