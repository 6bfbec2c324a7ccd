// SHA-256 (FIPS 180-4) of files, for the manifest's integrity checks: a runtime refuses an artifact
// whose bytes are not the ones the export wrote. Internal to the runtime.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace edgevlm {

class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t size);
    std::string hex_digest();  // finishes the hash

private:
    void block(const uint8_t* chunk);
    uint32_t state_[8];
    uint8_t buffer_[64];
    size_t buffered_ = 0;
    uint64_t length_ = 0;  // bytes hashed
};

// Lower-case hex digest of a file's bytes, or a directory's (e.g. an .mlpackage) as export/manifest.py sha256_path takes
// it: every file under it in Python's Path order (by path components), each as its relative path,
// a NUL byte, then its bytes. `bytes` receives the total size. Throws std::runtime_error
// naming a file it cannot read.
std::string sha256_path(const std::string& path, int64_t* bytes = nullptr);

}  // namespace edgevlm
