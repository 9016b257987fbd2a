// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/detail/execute.hpp>
#include <polymap/detail/run_state.hpp>
#include <polymap/error.hpp>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace polymap::detail {

/// Where a map writes its results: the vector it returns when `R` can be default
/// constructed and assigned, a vector of optionals otherwise. Not for bool: a
/// std::vector<bool> packs its elements into shared words, which two threads cannot write at
/// once.
template <class R>
inline constexpr bool direct_results_v = std::is_default_constructible_v<R> &&
                                         std::is_move_assignable_v<R> &&
                                         !std::is_same_v<R, bool>;

template <class R>
using slot_t = std::conditional_t<direct_results_v<R>, R, std::optional<R>>;

template <class T>
inline constexpr bool is_optional_v = false;
template <class T>
inline constexpr bool is_optional_v<std::optional<T>> = true;

/// Stores result `r` in `slot`: assigned, or emplaced in an optional that cannot be assigned
/// it (a result with no assignment: a struct with a const member). A result that is an
/// optional itself is assigned to an optional of its type.
template <class Slot, class R>
void put_result(Slot&& slot, R&& r) {
  if constexpr (is_optional_v<std::remove_cvref_t<Slot>> &&
                !std::is_assignable_v<std::remove_cvref_t<Slot>&, R&&>) {
    slot.emplace(std::forward<R>(r));
  } else {
    slot = std::forward<R>(r);
  }
}

/// `n` value-initialised elements; when they are trivial and fill at least 4 MiB, the pages
/// are readied first (prepare_large_buffer: huge pages, no fault per page after a fork).
template <class T>
[[nodiscard]] std::vector<T> make_large_vector(std::size_t n) {
  std::vector<T> v;
  if constexpr (std::is_trivially_default_constructible_v<T>) {
    constexpr std::size_t huge_threshold = std::size_t{4} << 20;
    v.reserve(n);
    if (n * sizeof(T) >= huge_threshold) prepare_large_buffer(v.data(), n * sizeof(T));
  }
  v.resize(n);
  return v;
}

template <class R>
[[nodiscard]] std::vector<slot_t<R>> make_slots(std::size_t n) {
  return make_large_vector<slot_t<R>>(n);
}

/// The vector a successful map returns, of the results in `slots` (every one set).
template <class R>
[[nodiscard]] std::vector<R> finish_results(std::span<slot_t<R>> slots) {
  std::vector<R> out;
  out.reserve(slots.size());
  for (auto& slot : slots) {
    if constexpr (direct_results_v<R>) {
      out.push_back(std::move(slot));
    } else {
      out.push_back(std::move(*slot));
    }
  }
  return out;
}

/// The same, from the vector the results were written to: that vector itself where it
/// holds the results as they are.
template <class R>
[[nodiscard]] std::vector<R> finish_results(std::vector<slot_t<R>>&& slots) {
  if constexpr (direct_results_v<R>) {
    return std::move(slots);
  } else {
    return finish_results<R>(std::span<slot_t<R>>(slots));
  }
}

/// Throws the error of a finished call whose state says it failed or was cancelled;
/// returns when every item succeeded. `slots` is empty for calls without results.
template <class R, class Slot>
void throw_if_failed(run_state& state, std::span<Slot> slots) {
  if (state.has_failures()) {
    std::vector<item_failure> failures = state.take_failures();
    map_error error(std::move(failures), state.total());
    if constexpr (!std::is_void_v<R> && std::is_same_v<Slot, slot_t<R>>) {
      if (!slots.empty()) {
        std::vector<std::optional<R>> partial(slots.size());
        const auto& sorted = error.failures();
        for (const index_range& range : state.take_ranges()) {
          for (std::size_t i = range.begin; i < range.end; ++i) {
            const auto it = std::lower_bound(
                sorted.begin(), sorted.end(), i,
                [](const item_failure& f, std::size_t index) { return f.index < index; });
            if (it != sorted.end() && it->index == i) continue;
            Slot& slot = slots[i];
            if constexpr (!direct_results_v<R>) {  // an optional of polymap's around it
              if (slot) partial[i].emplace(std::move(*slot));
            } else {
              partial[i].emplace(std::move(slot));
            }
          }
        }
        error.set_results(std::move(partial));
      }
    }
    throw error;
  }
  if (state.cancelled() && state.done() < state.total()) {
    throw cancelled_error(state.done(), state.total());
  }
}

/// The same, for calls whose results are not kept (streams, for_each).
template <class R>
void throw_if_failed(run_state& state) {
  throw_if_failed<R, char>(state, {});
}

}  // namespace polymap::detail
