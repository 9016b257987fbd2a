// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Must not compile (tests/cmake/CMakeLists.txt, cmake.cuda_host_call): the lambda claims to
// run on the GPU, but calls a function that exists on the host alone.
#include <polymap/cuda/map.hpp>

#include <vector>

float host_only(float x) { return x + 1; }

int main() {
  const std::vector<float> xs(100, 1.0F);
  const auto ys = polymap::cuda::map(xs, [] __host__ __device__(float x) { return host_only(x); });
  return ys.size() == xs.size() ? 0 : 1;
}
