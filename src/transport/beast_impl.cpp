// The one definition of Boost.Beast's non-template functions (BOOST_BEAST_SEPARATE_COMPILATION).
// Built at -O3 (see CMakeLists.txt) so that WebSocket masking, which every client-to-server
// byte goes through, is vectorized: at -O2 GCC 12 leaves it a 4-byte loop (~3 GB/s).
#include <boost/beast/src.hpp>
