// nccl_driver.cc — tests/test_nccl.py's standalone driver for runtime/cuda/nccl_comm.h and the
// NCCL part of runtime/cuda/libs.cc, built with g++ (and nvcc for nccl_comm.cu when the test
// links the communicator) without the Python extension.  Needs no GPU.
//
//   nccl_driver plan                  the deterministic sum's exchange, simulated for 1..7 ranks
//                                     and many sizes: every rank ends with the rank-order sum,
//                                     bit for bit.  Prints "ok" or the first mismatch (exit 1).
//   nccl_driver load DIR...           set_cuda_library_dirs(DIR...), then load_library():
//                                     "path=<file> version=<n>" or "error=<message>".
//   nccl_driver create N [DIR...]     N threads, each a rank of an in-process host communicator,
//                                     call nccl::create() (library folders DIR...); prints
//                                     "rank <r> code=<c> <message>" per rank.
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cuda/nccl_comm.h"
#include "device.h"

using graphc::nccl::DeterministicPlan;
using graphc::nccl::Span;
using graphc::nccl::Transfer;

namespace {

// -- plan: simulate the exchange of nccl_comm.cc's deterministic start() ----------------------

template <class T> bool check_plan(uint64_t count, int size, std::mt19937_64& rng) {
  std::vector<std::vector<T>> data(static_cast<size_t>(size), std::vector<T>(count));
  std::uniform_real_distribution<double> u(-1e3, 1e3);
  for (auto& d : data) {
    for (auto& x : d) x = static_cast<T>(u(rng));
  }
  // The reference: rank-order sum, one add at a time.
  std::vector<T> want(count);
  for (uint64_t i = 0; i < count; ++i) {
    T acc = data[0][i];
    for (int p = 1; p < size; ++p) acc = acc + data[static_cast<size_t>(p)][i];
    want[i] = acc;
  }
  std::vector<DeterministicPlan> plans;
  uint64_t covered = 0;
  for (int r = 0; r < size; ++r) {
    plans.push_back(graphc::nccl::deterministic_plan(count, size, r));
    const DeterministicPlan& p = plans.back();
    if (p.stride * static_cast<uint64_t>(size) < count || (size > 0 && p.stride > (count + size - 1) / size)) {
      std::printf("bad stride %llu for count %llu size %d\n", (unsigned long long)p.stride, (unsigned long long)count,
                  size);
      return false;
    }
    if (p.own.count && p.own.offset != covered) {
      std::printf("chunk of rank %d starts at %llu, expected %llu\n", r, (unsigned long long)p.own.offset,
                  (unsigned long long)covered);
      return false;
    }
    covered += p.own.count;
  }
  if (covered != count) {
    std::printf("chunks cover %llu of %llu elements\n", (unsigned long long)covered, (unsigned long long)count);
    return false;
  }
  const uint64_t stride = plans[0].stride;
  // Scratch of each rank: size * stride elements, poisoned.
  std::vector<std::vector<T>> scratch(static_cast<size_t>(size),
                                      std::vector<T>(stride * static_cast<uint64_t>(size), static_cast<T>(-7777)));
  // The grouped send/recv: every recv of rank r from p matches a send of p to r of the same count.
  for (int r = 0; r < size; ++r) {
    for (const Transfer& rv : plans[r].recvs) {
      const Transfer* match = nullptr;
      for (const Transfer& sd : plans[rv.peer].sends) {
        if (sd.peer == r) match = &sd;
      }
      if (match == nullptr || match->span.count != rv.span.count) {
        std::printf("rank %d receives %llu from %d, which sends %llu\n", r, (unsigned long long)rv.span.count, rv.peer,
                    match ? (unsigned long long)match->span.count : 0ULL);
        return false;
      }
      if (rv.span.offset + rv.span.count > scratch[r].size() || match->span.offset + match->span.count > count) {
        std::printf("a transfer leaves its buffer\n");
        return false;
      }
      std::memcpy(&scratch[r][rv.span.offset], &data[rv.peer][match->span.offset], rv.span.count * sizeof(T));
    }
    // Every send has its recv.
    for (const Transfer& sd : plans[r].sends) {
      bool found = false;
      for (const Transfer& rv : plans[sd.peer].recvs) found = found || rv.peer == r;
      if (!found) {
        std::printf("rank %d sends to %d, which does not receive\n", r, sd.peer);
        return false;
      }
    }
  }
  // The ordered sum into scratch slot r (what the kernel does).
  for (int r = 0; r < size; ++r) {
    const DeterministicPlan& p = plans[r];
    std::vector<T> out(p.own.count);
    for (uint64_t i = 0; i < p.own.count; ++i) {
      out[i] = graphc::nccl::ordered_sum_at(scratch[r].data(), stride, data[r].data() + p.own.offset, size, r, i);
    }
    std::copy(out.begin(), out.end(), scratch[r].begin() + static_cast<long>(stride * static_cast<uint64_t>(r)));
  }
  // The allgather (slot p from rank p), then the copy back of `count` elements.
  std::vector<std::vector<T>> gathered(static_cast<size_t>(size), std::vector<T>(stride * static_cast<uint64_t>(size)));
  for (int r = 0; r < size; ++r) {
    for (int p = 0; p < size; ++p) {
      std::copy(scratch[p].begin() + static_cast<long>(stride * p), scratch[p].begin() + static_cast<long>(stride * (p + 1)),
                gathered[r].begin() + static_cast<long>(stride * p));
    }
    if (std::memcmp(gathered[r].data(), want.data(), count * sizeof(T)) != 0) {
      std::printf("rank %d of %d, count %llu: not the rank-order sum\n", r, size, (unsigned long long)count);
      return false;
    }
  }
  return true;
}

int run_plan() {
  std::mt19937_64 rng(17);
  const uint64_t counts[] = {0, 1, 2, 3, 5, 7, 8, 63, 64, 65, 100, 1000, 4097};
  int cases = 0;
  for (int size = 1; size <= 7; ++size) {
    for (uint64_t count : counts) {
      if (!check_plan<float>(count, size, rng) || !check_plan<double>(count, size, rng) ||
          !check_plan<int64_t>(count, size, rng)) {
        return 1;
      }
      ++cases;
    }
  }
  // ordered_sum_at is not a reassociated sum: (1e8 + 1) - 1e8 in float32 is 0 in rank order.
  const float own[1] = {1e8f};
  const float scratch[3] = {0.f, 1.f, -1e8f};  // stride 1: slots of ranks 0, 1, 2
  if (graphc::nccl::ordered_sum_at(scratch, 1, own, 3, 0, 0) != 0.f) {
    std::printf("ordered_sum_at reassociates\n");
    return 1;
  }
  std::printf("ok %d cases\n", cases);
  return 0;
}

// -- load --------------------------------------------------------------------------------------

int run_load(int argc, char** argv) {
  std::vector<std::string> dirs(argv, argv + argc);
  graphc::set_cuda_library_dirs(dirs);
  std::string path, err;
  uint64_t version = 0;
  const int code = graphc::nccl::load_library(&path, &version, &err);
  if (code) {
    std::printf("error=%s\n", err.c_str());
  } else {
    std::printf("path=%s version=%llu\n", path.c_str(), (unsigned long long)version);
  }
  return 0;
}

// -- create: an in-process host communicator of N threads ----------------------------------

struct World {
  int size = 0;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  long generation = 0;
  std::vector<char> board;  // allgather: size * nbytes; broadcast: nbytes

  void sync() {
    std::unique_lock<std::mutex> lock(mu);
    const long gen = generation;
    if (++arrived == size) {
      arrived = 0;
      ++generation;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return generation != gen; });
    }
  }
};

struct Rank {
  World* world = nullptr;
  graphc_comm abi{};
};

int host_allgather(void* self, const void* send, uint64_t nbytes, void* recv, char*, size_t) {
  auto* r = static_cast<Rank*>(self);
  World& w = *r->world;
  {
    std::lock_guard<std::mutex> lock(w.mu);
    if (w.board.size() < nbytes * w.size) w.board.resize(nbytes * w.size);
  }
  w.sync();
  {
    std::lock_guard<std::mutex> lock(w.mu);
    std::memcpy(w.board.data() + nbytes * r->abi.rank, send, nbytes);
  }
  w.sync();
  std::memcpy(recv, w.board.data(), nbytes * w.size);
  w.sync();
  return 0;
}

int host_broadcast(void* self, void* data, uint64_t nbytes, int root, char*, size_t) {
  auto* r = static_cast<Rank*>(self);
  World& w = *r->world;
  if (r->abi.rank == root) {
    std::lock_guard<std::mutex> lock(w.mu);
    w.board.assign(static_cast<char*>(data), static_cast<char*>(data) + nbytes);
  }
  w.sync();
  if (r->abi.rank != root) std::memcpy(data, w.board.data(), nbytes);
  w.sync();
  return 0;
}

int host_barrier(void* self, char*, size_t) {
  static_cast<Rank*>(self)->world->sync();
  return 0;
}

int run_create(int size, int argc, char** argv) {
  graphc::set_cuda_library_dirs(std::vector<std::string>(argv, argv + argc));
  World world;
  world.size = size;
  std::vector<Rank> ranks(static_cast<size_t>(size));
  std::vector<std::string> lines(static_cast<size_t>(size));
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    Rank& k = ranks[r];
    k.world = &world;
    k.abi.abi_version = GRAPHC_COMM_ABI_VERSION;
    k.abi.rank = r;
    k.abi.size = size;
    k.abi.backend = "test";
    k.abi.self = &k;
    k.abi.allgather = host_allgather;
    k.abi.broadcast = host_broadcast;
    k.abi.barrier = host_barrier;
  }
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      graphc::nccl::Communicator* c = nullptr;
      std::string err;
      const int code = graphc::nccl::create(&ranks[r].abi, false, 5.0, &c, &err);
      lines[r] = "rank " + std::to_string(r) + " code=" + std::to_string(code) + " " + err;
      graphc::nccl::destroy(c);
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& l : lines) std::printf("%s\n", l.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "plan") == 0) return run_plan();
  if (argc >= 2 && std::strcmp(argv[1], "load") == 0) return run_load(argc - 2, argv + 2);
  if (argc >= 3 && std::strcmp(argv[1], "create") == 0) return run_create(std::atoi(argv[2]), argc - 3, argv + 3);
  std::fprintf(stderr, "usage: nccl_driver plan | load DIR... | create N [DIR...]\n");
  return 2;
}
