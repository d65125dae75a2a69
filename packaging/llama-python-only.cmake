# Included by CMake at the end of llama.cpp's own project() call (./dev passes it as
# CMAKE_PROJECT_llama.cpp_INCLUDE when it builds llama-cpp-python).
#
# llama-cpp-python forces llama.cpp's `common` library on (a FORCE'd cache entry), yet its Python side
# never loads it: common is the C++ glue of llama.cpp's programs (argument parsing, chat-template
# parsers, downloads through cpp-httplib). It was 60% of the compile time. A variable set in
# llama.cpp's directory scope shadows the cache entry there, so `if (LLAMA_BUILD_COMMON)` skips
# common, cpp-httplib and common's install rules; nothing else in the build changes.
set(LLAMA_BUILD_COMMON OFF)
