// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/backend.hpp>

#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

namespace polymap {

/// Base of everything polymap throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A bad option: names the option, the value and what is allowed.
class option_error : public error {
 public:
  /// @param option the option's name, e.g. "workers"
  /// @param value the value given, as text
  /// @param allowed what would have been accepted
  option_error(std::string option, std::string value, std::string allowed);
  [[nodiscard]] const std::string& option() const noexcept { return option_; }
  [[nodiscard]] const std::string& value() const noexcept { return value_; }
  [[nodiscard]] const std::string& allowed() const noexcept { return allowed_; }

 private:
  std::string option_, value_, allowed_;
};

/// A backend that was compiled out, or has no device at run time.
class backend_unavailable : public error {
 public:
  using error::error;
};

/// A CUDA runtime error: its numeric code and name (no CUDA types here).
class cuda_error : public error {
 public:
  cuda_error(int code, std::string name, const std::string& what)
      : error(what), code_(code), name_(std::move(name)) {}
  [[nodiscard]] int code() const noexcept { return code_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  int code_;
  std::string name_;
};

/// The call was cancelled (job.cancel() or its stop token) before every item ran.
class cancelled_error : public error {
 public:
  cancelled_error(std::size_t done, std::size_t total);
  [[nodiscard]] std::size_t done() const noexcept { return done_; }
  [[nodiscard]] std::size_t total() const noexcept { return total_; }

 private:
  std::size_t done_, total_;
};

/// What went wrong with one item.
enum class failure_kind {
  exception,  ///< the function threw
  signal,     ///< its worker process died of a signal
  exit,       ///< its worker process exited
  timeout,    ///< it ran past `options::timeout`
  memory,     ///< it exceeded `options::memory_limit`
};

[[nodiscard]] std::string_view to_string(failure_kind kind) noexcept;

/// One failed item, after all its attempts.
struct item_failure {
  std::size_t index = 0;            ///< position of the item in the input
  backend_kind backend{};           ///< where it ran
  failure_kind kind = failure_kind::exception;
  std::string what = {};              ///< exception text, or a description of the death
  int signal = 0;                   ///< the signal that killed the worker, or 0
  int exit_code = 0;                ///< the worker's exit status, or 0
  unsigned attempts = 0;            ///< times the item was run
};

/// One or more items failed. Carries every failure (sorted by index) and the results of
/// the items that succeeded.
class map_error : public error {
 public:
  /// @param failures the failed items; sorted by index here
  /// @param total items in the call
  map_error(std::vector<item_failure> failures, std::size_t total);

  [[nodiscard]] const std::vector<item_failure>& failures() const noexcept { return failures_; }
  [[nodiscard]] std::size_t total() const noexcept { return total_; }

  /// The results of the call, an empty optional for each failed or unstarted item.
  /// @tparam T the call's result type
  /// @throws error if T is not the call's result type, or the call kept no results here
  ///   (map_into, imap, for_each, a void function), each saying which
  template <class T>
  [[nodiscard]] const std::vector<std::optional<T>>& results() const {
    if (!results_) {
      throw error("map_error::results<T>: the failed call kept no results in the error "
                  "(map_into wrote them to its output, imap handed them out, for_each and a "
                  "void function have none)");
    }
    if (!holds<T>()) {
      throw error("map_error::results<T>: T is not the result type of the failed call");
    }
    return *static_cast<const std::vector<std::optional<T>>*>(results_.get());
  }

  /// Attaches the partial results (done by polymap when it throws).
  template <class T>
  void set_results(std::vector<std::optional<T>> results) {
    results_ = std::make_shared<std::vector<std::optional<T>>>(std::move(results));
    results_type_ = type_name<T>();
  }

 private:
  map_error(std::vector<item_failure>&& sorted_failures, std::size_t total, int);

  std::vector<item_failure> failures_;
  std::size_t total_;
  std::shared_ptr<const void> results_;
  /// What names result type T: its type_info's name, which is the same in every shared
  /// object of a program (a library built with hidden visibility too); without RTTI
  /// (-fno-rtti), the address of an object of T's own, which is the same in one binary.
  template <class T>
  static const char* type_name() noexcept {
#if defined(__GXX_RTTI) || defined(__cpp_rtti)
    return typeid(std::vector<std::optional<T>>).name();
#else
    static constexpr char tag = 0;
    return &tag;
#endif
  }
  template <class T>
  [[nodiscard]] bool holds() const noexcept {
#if defined(__GXX_RTTI) || defined(__cpp_rtti)
    // Names, not addresses: each shared object may have a copy of the name.
    return results_type_ != nullptr && std::strcmp(results_type_, type_name<T>()) == 0;
#else
    return results_type_ == type_name<T>();
#endif
  }
  const char* results_type_ = nullptr;
};

}  // namespace polymap
