"""edgevlm's native runtime (C++17): sources, CMake project and the Python helper that builds it."""
