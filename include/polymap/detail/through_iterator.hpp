// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <compare>
#include <cstddef>
#include <iterator>
#include <type_traits>

namespace polymap::detail {

/// A random-access iterator over an array of iterators `It` that reads what each refers to:
/// a range that cannot be indexed (a std::list, a std::map, a filter view) indexed where its
/// items are. (A std::views::transform would do, but clang 14 cannot compile the views of
/// GCC 12's libstdc++.)
template <class It>
class through_iterator {
 public:
  using iterator_concept = std::random_access_iterator_tag;
  using value_type = std::iter_value_t<It>;
  using difference_type = std::ptrdiff_t;
  using reference = std::iter_reference_t<It>;
  // What C++17 algorithms read: an iterator whose reference is not a real one is an input one.
  using iterator_category = std::conditional_t<std::is_lvalue_reference_v<reference>,
                                               std::random_access_iterator_tag,
                                               std::input_iterator_tag>;

  through_iterator() = default;
  explicit through_iterator(const It* at) noexcept : at_(at) {}

  reference operator*() const { return **at_; }
  reference operator[](difference_type n) const { return *at_[n]; }

  through_iterator& operator++() noexcept {
    ++at_;
    return *this;
  }
  through_iterator operator++(int) noexcept {
    through_iterator old = *this;
    ++at_;
    return old;
  }
  through_iterator& operator--() noexcept {
    --at_;
    return *this;
  }
  through_iterator operator--(int) noexcept {
    through_iterator old = *this;
    --at_;
    return old;
  }
  through_iterator& operator+=(difference_type n) noexcept {
    at_ += n;
    return *this;
  }
  through_iterator& operator-=(difference_type n) noexcept {
    at_ -= n;
    return *this;
  }
  friend through_iterator operator+(through_iterator i, difference_type n) noexcept {
    return i += n;
  }
  friend through_iterator operator+(difference_type n, through_iterator i) noexcept {
    return i += n;
  }
  friend through_iterator operator-(through_iterator i, difference_type n) noexcept {
    return i -= n;
  }
  friend difference_type operator-(const through_iterator& a,
                                   const through_iterator& b) noexcept {
    return a.at_ - b.at_;
  }
  friend bool operator==(const through_iterator&, const through_iterator&) = default;
  friend auto operator<=>(const through_iterator&, const through_iterator&) = default;

 private:
  const It* at_ = nullptr;
};

}  // namespace polymap::detail
