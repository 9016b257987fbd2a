// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace polymap {

/// How a result crosses from a worker process to the caller, as bytes.
///
/// The processes backend writes trivially copyable results straight into shared memory
/// (unless they have a codec: one that holds a pointer needs it); any other result type
/// needs a codec. Built in for `std::string`, `std::vector` of a trivially copyable type
/// (`bool` too) or of a type with a codec, and `std::pair` and `std::tuple` whose members are
/// trivially copyable or have a codec (libstdc++'s pair and tuple are not trivially
/// copyable); give your own type one by specialising this template:
/// @code
/// template <> struct polymap::codec<particle> {
///   static void encode(const particle& p, std::string& out);  // append bytes to out
///   static particle decode(std::string_view bytes);           // what encode wrote
/// };
/// @endcode
template <class T>
struct codec;

/// Whether `T` has a usable `codec<T>`.
template <class T>
concept has_codec = requires(const T& value, std::string& out, std::string_view bytes) {
  codec<T>::encode(value, out);
  { codec<T>::decode(bytes) } -> std::same_as<T>;
};

template <>
struct codec<std::string> {
  static void encode(const std::string& value, std::string& out) { out.append(value); }
  [[nodiscard]] static std::string decode(std::string_view bytes) { return std::string(bytes); }
};

template <class T>
requires(std::is_trivially_copyable_v<T> && !has_codec<T> && !std::is_same_v<T, bool>)
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

/// A std::vector<bool> packs its elements into bits: a byte each.
template <>
struct codec<std::vector<bool>> {
  static void encode(const std::vector<bool>& value, std::string& out) {
    for (const bool b : value) out.push_back(b ? '\1' : '\0');
  }
  [[nodiscard]] static std::vector<bool> decode(std::string_view bytes) {
    std::vector<bool> value(bytes.size());
    for (std::size_t i = 0; i < bytes.size(); ++i) value[i] = bytes[i] != '\0';
    return value;
  }
};

namespace detail {

/// Whether values of `T` cross between processes as their own bytes: trivially copyable,
/// and with no codec of the user's, which says how otherwise (a struct holding a pointer).
template <class T>
concept crosses_as_bytes = std::is_trivially_copyable_v<T> && !has_codec<T>;

/// Whether `codec<T>` is specialised (the primary template is only declared).
template <class T>
concept codec_specialised = requires { sizeof(codec<T>); };

/// A member of a pair or tuple that a codec can carry: trivially copyable (its bytes), or
/// with a codec of its own (its size, then its bytes).
template <class T>
concept codec_member = std::is_trivially_copyable_v<T> || has_codec<T>;

template <class T>
void encode_member(const T& value, std::string& out) {
  if constexpr (crosses_as_bytes<T>) {
    out.append(reinterpret_cast<const char*>(&value), sizeof(T));
  } else {
    const std::size_t at = out.size();
    out.append(sizeof(std::uint64_t), '\0');
    codec<T>::encode(value, out);
    const std::uint64_t size = out.size() - at - sizeof(std::uint64_t);
    std::memcpy(out.data() + at, &size, sizeof size);
  }
}

/// Reads one member that encode_member wrote at the front of `bytes`, and drops it there.
/// @throws std::length_error when `bytes` holds less than that
template <class T>
[[nodiscard]] T decode_member(std::string_view& bytes) {
  auto take = [&bytes](std::size_t n) {
    if (bytes.size() < n) {
      throw std::length_error("polymap::codec of a pair or tuple: " +
                              std::to_string(bytes.size()) + " bytes left where " +
                              std::to_string(n) + " were expected");
    }
    const std::string_view front = bytes.substr(0, n);
    bytes.remove_prefix(n);
    return front;
  };
  if constexpr (crosses_as_bytes<T>) {
    alignas(T) std::byte raw[sizeof(T)];
    std::memcpy(raw, take(sizeof(T)).data(), sizeof(T));
    return std::move(*std::launder(reinterpret_cast<T*>(raw)));  // a move-only type too
  } else {
    std::uint64_t size = 0;
    std::memcpy(&size, take(sizeof size).data(), sizeof size);
    return codec<T>::decode(take(static_cast<std::size_t>(size)));
  }
}

}  // namespace detail

/// A std::vector of a type with a codec (a std::string, a pair, a type of the user's): its
/// count, then each element as a pair's member is (its size, then its bytes).
template <class T>
  requires has_codec<T>
struct codec<std::vector<T>> {
  static void encode(const std::vector<T>& value, std::string& out) {
    const std::uint64_t count = value.size();
    out.append(reinterpret_cast<const char*>(&count), sizeof count);
    for (const T& element : value) detail::encode_member(element, out);
  }
  /// @throws std::length_error for bytes that encode did not write
  [[nodiscard]] static std::vector<T> decode(std::string_view bytes) {
    std::uint64_t count = 0;
    if (bytes.size() < sizeof count) {
      throw std::length_error("polymap::codec of a std::vector: no element count");
    }
    std::memcpy(&count, bytes.data(), sizeof count);
    bytes.remove_prefix(sizeof count);
    std::vector<T> value;
    // Each element takes at least its size's 8 bytes: a count past that is not encode's.
    value.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(count, bytes.size() / 8)));
    for (std::uint64_t i = 0; i < count; ++i) value.push_back(detail::decode_member<T>(bytes));
    return value;
  }
};

/// A pair whose members are trivially copyable or have a codec: one member after the other.
template <detail::codec_member First, detail::codec_member Second>
struct codec<std::pair<First, Second>> {
  static void encode(const std::pair<First, Second>& value, std::string& out) {
    detail::encode_member(value.first, out);
    detail::encode_member(value.second, out);
  }
  /// @throws std::length_error for bytes that encode did not write
  [[nodiscard]] static std::pair<First, Second> decode(std::string_view bytes) {
    First first = detail::decode_member<First>(bytes);
    Second second = detail::decode_member<Second>(bytes);
    return {std::move(first), std::move(second)};
  }
};

/// A tuple whose members are trivially copyable or have a codec: one member after the other.
template <detail::codec_member... Members>
struct codec<std::tuple<Members...>> {
  static void encode(const std::tuple<Members...>& value, std::string& out) {
    std::apply([&out](const Members&... m) { (detail::encode_member(m, out), ...); }, value);
  }
  /// @throws std::length_error for bytes that encode did not write
  [[nodiscard]] static std::tuple<Members...> decode(std::string_view bytes) {
    // Braced initialisation: its members are read in order.
    return std::tuple<Members...>{detail::decode_member<Members>(bytes)...};
  }
};

/// Whether results of type `T` can come back from a worker process: void,
/// trivially copyable, or with a codec.
template <class T>
inline constexpr bool transferable_v =
    std::is_void_v<T> || std::is_trivially_copyable_v<T> || has_codec<T>;

namespace detail {

/// What a result type needs to leave the process that made it, as a refusal says it: the one
/// list of the codecs built in above.
inline constexpr char transferable_results[] =
    "trivially copyable, or with a polymap::codec<T> (built in for std::string, std::vector of "
    "a trivially copyable type, of bool or of a type with a codec, and std::pair and "
    "std::tuple of such members; specialise polymap::codec for your own type)";

}  // namespace detail

}  // namespace polymap
