# Included by CMake at the end of llama.cpp's own project() call (./dev passes it as
# CMAKE_PROJECT_llama.cpp_INCLUDE when it builds llama-cpp-python).
#
# llama-cpp-python forces llama.cpp's `common` library on (a FORCE'd cache entry), yet its Python side
# never loads it: common is the C++ glue of llama.cpp's programs (argument parsing, chat-template
# parsers, downloads through cpp-httplib). It was 60% of the compile time. A variable set in
# llama.cpp's directory scope shadows the cache entry there, so `if (LLAMA_BUILD_COMMON)` skips
# common, cpp-httplib and common's install rules; nothing else in the build changes.
set(LLAMA_BUILD_COMMON OFF)

# llama.cpp's and ggml's own install rules put their libraries in `${CMAKE_INSTALL_LIBDIR}` under the
# wheel's root, i.e. site-packages/lib, next to the copies llama-cpp-python installs in llama_cpp/lib:
# 18 MB twice, plus headers in site-packages/include. Pointed at the package's own folders (as
# llama-cpp-python does for Pyodide), both rules write the same files once. Normal variables here
# shadow GNUInstallDirs' cache entries in llama.cpp's directory scope, as above.
set(CMAKE_INSTALL_LIBDIR llama_cpp/lib)
set(CMAKE_INSTALL_BINDIR llama_cpp/lib)
set(CMAKE_INSTALL_INCLUDEDIR llama_cpp/include)
