// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// polymap::cuda::device_buffer: an array in GPU memory, the input and output of a
/// device-resident map (nothing is copied).

#include <polymap/cuda/check.hpp>

#include <cuda_runtime.h>

#include <cstddef>
#include <new>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace polymap::cuda {

/// Selects device `device` for the current thread until destroyed, then restores the one
/// that was current.
/// @throws cuda_error when the device does not exist
class device_guard {
 public:
  explicit device_guard(int device) {
    POLYMAP_CUDA_CHECK(cudaGetDevice(&previous_));
    if (device != previous_) {
      POLYMAP_CUDA_CHECK(cudaSetDevice(device));
      changed_ = true;
    }
  }
  /// The same for a destructor: a device that cannot be selected leaves the current one.
  device_guard(int device, std::nothrow_t) noexcept {
    changed_ = cudaGetDevice(&previous_) == cudaSuccess && device != previous_ &&
               cudaSetDevice(device) == cudaSuccess;
  }
  // Restores only what it changed: the common case (device 0 current) costs one call.
  ~device_guard() {
    if (changed_) (void)cudaSetDevice(previous_);
  }
  device_guard(const device_guard&) = delete;
  device_guard& operator=(const device_guard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

/// `n` elements of trivially copyable `T` in the memory of one GPU, uninitialised.
/// Move-only. Thread safety: none; share it read-only or not at all.
template <class T>
class device_buffer {
  static_assert(std::is_trivially_copyable_v<T>,
                "polymap::cuda::device_buffer<T>: T must be trivially copyable");

 public:
  device_buffer() = default;
  /// @throws cuda_error (cudaErrorMemoryAllocation when the GPU has not enough free memory)
  explicit device_buffer(std::size_t n, int device = 0) : size_(n), device_(device) {
    if (n == 0) return;
    device_guard on(device);
    POLYMAP_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), n * sizeof(T)));
  }
  /// A copy of `host` on the GPU.
  /// @throws cuda_error
  explicit device_buffer(std::span<const T> host, int device = 0)
      : device_buffer(host.size(), device) {
    if (!host.empty()) {
      device_guard on(device);
      POLYMAP_CUDA_CHECK(
          cudaMemcpy(data_, host.data(), host.size_bytes(), cudaMemcpyHostToDevice));
    }
  }
  device_buffer(device_buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)),
        device_(o.device_) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      device_ = o.device_;
    }
    return *this;
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  ~device_buffer() { release(); }

  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] int device() const noexcept { return device_; }
  /// A span over the device memory: only device code may read through it.
  [[nodiscard]] std::span<T> span() noexcept { return {data_, size_}; }
  [[nodiscard]] std::span<const T> span() const noexcept { return {data_, size_}; }

  /// The contents, copied to the host.
  /// @throws cuda_error
  [[nodiscard]] std::vector<T> to_host() const {
    if constexpr (std::is_same_v<T, bool>) {
      // A std::vector<bool> packs its bits: the bools come through a buffer of their own.
      const std::unique_ptr<bool[]> staged(new bool[size_]);  // NOLINT(modernize-avoid-c-arrays)
      copy_out(staged.get());
      return std::vector<bool>(staged.get(), staged.get() + size_);
    } else {
      std::vector<T> out(size_);
      copy_out(out.data());
      return out;
    }
  }

 private:
  /// Copies the contents to host memory at `to`. @throws cuda_error
  void copy_out(T* to) const {
    if (size_ == 0) return;
    device_guard on(device_);
    POLYMAP_CUDA_CHECK(cudaMemcpy(to, data_, size_ * sizeof(T), cudaMemcpyDeviceToHost));
  }
  void release() noexcept {
    if (data_ == nullptr) return;
    // Freed on its own device, whichever is current; cudaFree may report an earlier sticky
    // error, and a destructor has nobody to tell.
    {
      const device_guard on(device_, std::nothrow);
      (void)cudaFree(data_);
    }
    data_ = nullptr;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
  int device_ = 0;
};

}  // namespace polymap::cuda
