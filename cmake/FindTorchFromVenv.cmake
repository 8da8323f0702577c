# Locates LibTorch inside the Python venv that scripts/bootstrap creates.
# LONGHAUL_VENV (cache/env) defaults to ~/.cache/longhaul/venv.
if(NOT DEFINED LONGHAUL_VENV)
  if(DEFINED ENV{LONGHAUL_VENV})
    set(LONGHAUL_VENV $ENV{LONGHAUL_VENV})
  else()
    set(LONGHAUL_VENV $ENV{HOME}/.cache/longhaul/venv)
  endif()
endif()
set(LONGHAUL_VENV ${LONGHAUL_VENV} CACHE PATH "Python venv holding the pinned torch wheel")
set(LONGHAUL_PYTHON ${LONGHAUL_VENV}/bin/python CACHE FILEPATH "venv python (parity oracle)")
if(NOT EXISTS ${LONGHAUL_PYTHON})
  message(FATAL_ERROR "No venv at ${LONGHAUL_VENV}: run ./scripts/bootstrap first (or set LONGHAUL_VENV).")
endif()
execute_process(
  COMMAND ${LONGHAUL_PYTHON} -c "import torch, torch.utils; print(torch.utils.cmake_prefix_path); print(torch.__version__)"
  OUTPUT_VARIABLE _torch_out OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _torch_rc)
if(NOT _torch_rc EQUAL 0)
  message(FATAL_ERROR "torch is not importable from ${LONGHAUL_PYTHON}: run ./scripts/bootstrap")
endif()
string(REPLACE "\n" ";" _torch_lines "${_torch_out}")
list(GET _torch_lines 0 _torch_prefix)
list(GET _torch_lines 1 LONGHAUL_TORCH_VERSION)
list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
# The wheel's Caffe2 config looks for the CUDA toolkit; point it at the system one.
if(LONGHAUL_HAVE_CUDA)
  set(CUDA_TOOLKIT_ROOT_DIR /usr/local/cuda)
  set(CUDAToolkit_ROOT /usr/local/cuda)
  # No GPU on build machines: name the targets instead of probing for installed GPUs.
  if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
    set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
  endif()
endif()
find_package(Torch REQUIRED)
message(STATUS "longhaul: LibTorch ${LONGHAUL_TORCH_VERSION} from ${_torch_prefix}")
# TORCH_CXX_FLAGS is a space-separated string (e.g. -D_GLIBCXX_USE_CXX11_ABI=1).
separate_arguments(TORCH_CXX_FLAGS_LIST UNIX_COMMAND "${TORCH_CXX_FLAGS}")
