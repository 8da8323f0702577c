// Two error tiers (after Gloo's docs/errors.md):
//  * InvariantError: a broken internal contract. Thrown by LH_CHECK with file:line and the
//    values involved; never caught to "carry on" — it means a bug.
//  * Recoverable errors (ConfigError, DataError, transport's IoError/DecodeError, ...): bad
//    input or a failed peer; the caller reports them (exit status 2 for user input) or
//    rebuilds the connection.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace longhaul {

class InvariantError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// A user-facing input error (config, corpus, CLI). main() prints what() and exits 2.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Config file / --set problems: message names file, key, value and what was expected.
class ConfigError : public UserError {
 public:
  using UserError::UserError;
};

// Corpus / dataset problems: message names the path and what was expected.
class DataError : public UserError {
 public:
  using UserError::UserError;
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_invariant(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace detail

}  // namespace longhaul

// LH_CHECK(cond, parts...): throws InvariantError "file:line: check `cond` failed: parts".
#define LH_CHECK(cond, ...)                                                                  \
  do {                                                                                       \
    if (!(cond))                                                                             \
      ::longhaul::detail::throw_invariant(__FILE__, __LINE__, #cond,                         \
                                          ::longhaul::detail::concat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)

// LH_CHECK_EQ(a, b): also prints both values.
#define LH_CHECK_EQ(a, b) LH_CHECK((a) == (b), #a " = ", (a), ", " #b " = ", (b))
