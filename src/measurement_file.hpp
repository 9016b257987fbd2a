// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

// What polymap measured about this machine and keeps between processes, so that a batch of
// many short programs does not measure it again in each one.

#include <chrono>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
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
  /// The file's lock between processes: a POSIX record lock on `<file>.lock` beside it,
  /// which a forked child does not inherit (a worker process of the processes backend,
  /// forked while it is held, cannot keep it held). Such a lock belongs to the process:
  /// threads of one process must exclude each other themselves (a second take_lock in the
  /// same process succeeds at once), and nothing else in the process may open and close
  /// the `.lock` file while it is held (any close of it lets the lock go).
  class lock {
   public:
    lock(const lock&) = delete;
    lock& operator=(const lock&) = delete;
    lock(lock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    lock& operator=(lock&& other) noexcept;
    ~lock();

   private:
    friend class measurement_file;
    explicit lock(int fd) noexcept : fd_(fd) {}
    int fd_;
  };

  explicit measurement_file(std::filesystem::path path) : path_(std::move(path)) {}

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

  /// What take_lock got.
  struct lock_result {
    std::optional<lock> held;
    bool busy = false;        ///< another process held it all along
    std::string why_not = {};  ///< when not held: why (the path and the system's error)
  };

  /// Takes the file's lock, waiting at most `wait` for another process to let it go; makes
  /// the folder if missing.
  [[nodiscard]] lock_result take_lock(std::chrono::milliseconds wait) const;

  /// The numbers saved under `key`, if the file has them: exactly `count` finite numbers.
  [[nodiscard]] std::optional<std::vector<double>> find(std::string_view key,
                                                        std::size_t count) const;

  /// Saves `values` under `key`, in place of that key's line, keeping the other keys'. The
  /// caller holds the lock (`held`); the new file replaces the old one by a rename, so a
  /// reader never sees half a file. What an earlier save that died before its rename left
  /// beside the file (`<file>.XXXXXX`) is removed.
  /// @return empty when saved, else why not (the path and the system's error): a failed save
  ///   loses only the saving, never a measurement in hand
  [[nodiscard]] std::string save(std::string_view key, std::span<const double> values,
                                 const lock& held) const;

 private:
  std::filesystem::path path_;
};

}  // namespace polymap::detail
