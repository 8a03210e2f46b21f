# Run after each project() of the llama.cpp build (CMAKE_PROJECT_INCLUDE, .cargo/config.toml):
# the libraries built on any distribution keep to what Rocky Linux 9's libstdc++ provides.
add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:SHELL:-include ${CMAKE_CURRENT_LIST_DIR}/glibcxx-rocky9.h>")
