// placeholder translation unit
namespace longhaul::transport {}
