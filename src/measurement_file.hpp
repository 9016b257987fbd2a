// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

// What polymap measured about this machine and keeps between processes, so that a batch of
// many short programs does not measure it again in each one.

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace polymap::detail {

/// Where polymap keeps its measurements: $XDG_CACHE_HOME/polymap, else $HOME/.cache/polymap;
/// empty when neither variable is set (nothing is kept then).
[[nodiscard]] std::filesystem::path cache_dir();

/// A text file of measurements, one line per key: the key, then its numbers, separated by
/// spaces. A key is one word (no spaces); lines that do not parse are skipped on reading
/// and dropped on the next save.
class measurement_file {
 public:
  explicit measurement_file(std::filesystem::path path) : path_(std::move(path)) {}

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

  /// The numbers saved under `key`, if the file has them: exactly `count` finite numbers.
  [[nodiscard]] std::optional<std::vector<double>> find(std::string_view key,
                                                        std::size_t count) const;

  /// Saves `values` under `key`, in place of that key's line, keeping the other keys'. The
  /// folder is made if missing; the new file replaces the old one by a rename, under an
  /// exclusive lock (flock on the file's `.lock` beside it), so a reader never sees half a
  /// file and two writers never lose each other's keys.
  /// @return empty when saved, else why not (the path and the system's error): a failed save
  ///   loses only the saving, never a measurement in hand
  [[nodiscard]] std::string save(std::string_view key, std::span<const double> values) const;

 private:
  std::filesystem::path path_;
};

}  // namespace polymap::detail
