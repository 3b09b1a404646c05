#pragma once

// The readers under test take a path, not a stream, so each fuzz input is written to one
// scratch file per process (on tmpfs when /dev/shm exists) and read back from there.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>

namespace unfold_fuzz {

class ScratchFile {
public:
  explicit ScratchFile(const char* stem)
  {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr ? dir : "/tmp") + "/unfold_fuzz_" + stem + "_" +
            std::to_string(static_cast<long>(getpid()));
  }

  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  ~ScratchFile() { std::remove(path_.c_str()); }

  // Replaces the file's contents with the given bytes; aborts if that fails, since a
  // half-written file would make the reader's behaviour look wrong when it is not.
  const std::string& write(const std::uint8_t* data, std::size_t size) const
  {
    std::FILE* file = std::fopen(path_.c_str(), "wb");
    if (file == nullptr || (size > 0 && std::fwrite(data, 1, size, file) != size) ||
        std::fclose(file) != 0) {
      std::perror(path_.c_str());
      std::abort();
    }
    return path_;
  }

  const std::string& path() const { return path_; }

private:
  std::string path_;
};

// A check on what a reader returned: a failure is reported as a crash, with the reason.
inline void require(bool ok, const char* what)
{
  if (!ok) {
    std::fprintf(stderr, "unfold fuzz: invariant failed: %s\n", what);
    std::abort();
  }
}

}  // namespace unfold_fuzz
