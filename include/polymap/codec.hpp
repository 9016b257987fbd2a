// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <concepts>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace polymap {

/// How a result crosses from a worker process to the caller, as bytes.
///
/// The processes backend writes trivially copyable results straight into shared memory;
/// any other result type needs a codec. Built in for `std::string` and `std::vector` of a
/// trivially copyable type; give your own type one by specialising this template:
/// @code
/// template <> struct polymap::codec<particle> {
///   static void encode(const particle& p, std::string& out);  // append bytes to out
///   static particle decode(std::string_view bytes);           // what encode wrote
/// };
/// @endcode
template <class T>
struct codec;

template <>
struct codec<std::string> {
  static void encode(const std::string& value, std::string& out) { out.append(value); }
  [[nodiscard]] static std::string decode(std::string_view bytes) { return std::string(bytes); }
};

template <class T>
requires std::is_trivially_copyable_v<T>
struct codec<std::vector<T>> {
  static void encode(const std::vector<T>& value, std::string& out) {
    out.append(reinterpret_cast<const char*>(value.data()), value.size() * sizeof(T));
  }
  [[nodiscard]] static std::vector<T> decode(std::string_view bytes) {
    std::vector<T> value(bytes.size() / sizeof(T));
    if (!value.empty()) std::memcpy(value.data(), bytes.data(), value.size() * sizeof(T));
    return value;
  }
};

/// Whether `T` has a usable `codec<T>`.
template <class T>
concept has_codec = requires(const T& value, std::string& out, std::string_view bytes) {
  codec<T>::encode(value, out);
  { codec<T>::decode(bytes) } -> std::same_as<T>;
};

/// Whether results of type `T` can come back from a worker process: void,
/// trivially copyable, or with a codec.
template <class T>
inline constexpr bool transferable_v =
    std::is_void_v<T> || std::is_trivially_copyable_v<T> || has_codec<T>;

}  // namespace polymap
