// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/error.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace polymap::detail::mpi {

/// Bytes of a message between ranks, out: values in this machine's byte order (every rank
/// runs the same program), texts as their size and their bytes.
class writer {
 public:
  explicit writer(std::string& out) : out_(out) {}
  template <class T>
  requires std::is_trivially_copyable_v<T>
  void put(T value) { out_.append(reinterpret_cast<const char*>(&value), sizeof value); }
  void put(std::string_view text) {
    put(static_cast<std::uint64_t>(text.size()));
    out_.append(text);
  }

 private:
  std::string& out_;
};

/// Bytes of a message between ranks, in, as writer wrote them; throws polymap::error at the
/// first read past the end.
class reader {
 public:
  explicit reader(std::string_view bytes) : bytes_(bytes) {}
  template <class T>
  requires std::is_trivially_copyable_v<T> T get() {
    T value;
    std::memcpy(&value, take(sizeof value), sizeof value);
    return value;
  }
  std::string get_text() {
    const auto size = get<std::uint64_t>();
    return {take(size), size};
  }
  /// A count of items of at least `each` bytes: never more than the bytes left could hold.
  std::size_t get_count(std::size_t each) {
    const auto n = get<std::uint64_t>();
    if (n > (bytes_.size() - at_) / each) truncated();
    return n;
  }
  [[nodiscard]] bool at_end() const noexcept { return at_ == bytes_.size(); }
  [[noreturn]] static void truncated() {
    throw error(
        "polymap: a message between MPI ranks is not one of polymap's "
        "(another program's message on polymap's communicator?)");
  }

 private:
  const char* take(std::size_t n) {
    if (n > bytes_.size() - at_) truncated();
    const char* p = bytes_.data() + at_;
    at_ += n;
    return p;
  }
  std::string_view bytes_;
  std::size_t at_ = 0;
};

}  // namespace polymap::detail::mpi
