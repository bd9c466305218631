// Driver of tests/test_aot_review.py: the AOT runtime's checkpoint writer (runtime/aot/npz.cc
// write_npz_atomic) when its temporary file's name is already taken.
//
//   aot_review_driver tmp_taken PATH
//     Before saving a one-tensor checkpoint at PATH, plants a symbolic link at every name the
//     writer could pick first (PATH.tmp-<pid>-<n> for n < 4), pointing at PATH.victim-<n>
//     (files it creates holding "victim").  Exit 0: the save succeeded; 10 + status: it
//     failed (the message on stderr).  The test then checks the victims and PATH.
//   aot_review_driver load_checkpoint PATH
//     read_npz(PATH) expecting no variables: exit 0, or 10 + status with the message on stderr.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "aot/npz.h"
#include "aot/tables.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: aot_review_driver tmp_taken|load_checkpoint PATH\n");
    return 2;
  }
  const std::string path = argv[2];
  if (std::strcmp(argv[1], "load_checkpoint") == 0) {
    try {
      graphc::aot::read_npz(path, {});
    } catch (const graphc::aot::Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return 10 + e.status;
    }
    return 0;
  }
  if (std::strcmp(argv[1], "tmp_taken") != 0) return 2;
  for (int n = 0; n < 4; ++n) {
    const std::string victim = path + ".victim-" + std::to_string(n);
    std::FILE* f = std::fopen(victim.c_str(), "wb");
    if (f == nullptr || std::fputs("victim", f) < 0 || std::fclose(f) != 0) return 3;
    const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(n);
    if (::symlink(victim.c_str(), tmp.c_str()) != 0) return 4;
  }
  const float w[3] = {1.0f, 2.0f, 3.0f};
  try {
    graphc::aot::write_npz_atomic(path, {graphc::aot::NpzTensor{"w", 1, {3}, w, sizeof w}});
  } catch (const graphc::aot::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 10 + e.status;
  }
  return 0;
}
