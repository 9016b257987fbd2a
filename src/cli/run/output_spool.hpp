// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cli/run/fd_io.hpp"

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace polymap::cli::run {

/// An unlinked temporary file that holds the output of items that ended ahead of their
/// turn under --keep-order, so that what is held back is on disk rather than in memory.
/// Each piece of output is appended, written out once and released; the space of released
/// pieces is given back to the file system as it goes, and all of it once none is left.
/// The file has no name: it is gone when polymap exits, however it exits (where the file
/// system has no O_TMPFILE, the name lives from its creation to the unlink just after).
/// Thread safety: none.
class output_spool {
 public:
  /// Where a piece is in the file.
  struct extent {
    std::int64_t offset = 0;
    std::size_t size = 0;
  };

  /// Creates the file in `dir`, mode 0600, without a name (O_TMPFILE, or a name removed at
  /// once where the file system has no O_TMPFILE).
  /// @throws std::runtime_error naming `dir` and the cause
  explicit output_spool(std::string dir);
  output_spool(const output_spool&) = delete;
  output_spool& operator=(const output_spool&) = delete;
  ~output_spool();

  /// Appends `size` bytes of `fd` from its offset 0, then `data`, as one piece. When a write
  /// fails (a full disk) the file is left as it was.
  /// @return 0 and the piece in `piece`, or the errno that stopped it
  int append(int fd, std::size_t size, const std::string& data, extent& piece) noexcept;

  /// Hands the bytes of `piece` to `sink` as copy_bytes() does.
  /// @return 0, or the errno that stopped it
  template <class Sink>
  int write_out(const extent& piece, Sink&& sink) const {
    return copy_bytes(fd_, piece.offset, piece.size, std::forward<Sink>(sink));
  }

  /// Gives the space of a piece that was written out back to the file system.
  void release(const extent& piece) noexcept;

  /// The directory the file is in.
  [[nodiscard]] const std::string& dir() const noexcept { return dir_; }

 private:
  /// Shortens the file to `size` bytes, giving the space past it back to the file system.
  /// @return whether it could: where it cannot, those bytes stay allocated, and are never
  ///   read (each piece is read from its own extent), until a later cut or the close
  bool cut(std::int64_t size) noexcept;

  std::string dir_;
  int fd_ = -1;
  std::int64_t end_ = 0;    // where the next piece goes
  std::size_t pieces_ = 0;  // appended and not released
};

/// The directory for temporary files: $TMPDIR when it is set and not empty, else /tmp.
std::string temp_dir_path();

}  // namespace polymap::cli::run
