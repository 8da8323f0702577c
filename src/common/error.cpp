#include "common/error.h"

namespace longhaul::detail {

void throw_invariant(const char* file, int line, const char* cond, const std::string& msg) {
  std::ostringstream os;
  os << file << ":" << line << ": check `" << cond << "` failed";
  if (!msg.empty()) os << ": " << msg;
  throw InvariantError(os.str());
}

}  // namespace longhaul::detail
