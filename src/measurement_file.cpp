// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "measurement_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace polymap::detail {
namespace {

std::string system_error(const std::string& what, const std::filesystem::path& p, int err) {
  return what + " " + p.string() + ": " + std::strerror(err);
}

/// Splits `line` into its key and numbers (read as the "C" locale writes them, whatever the
/// program's locale); false when it does not parse.
bool parse(const std::string& line, std::string& key, std::vector<double>& values) {
  std::istringstream in(line);
  if (!(in >> key)) return false;
  values.clear();
  std::string word;
  while (in >> word) {
    double v = 0;
    const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
    if (ec != std::errc() || end != word.data() + word.size() || !std::isfinite(v)) return false;
    values.push_back(v);
  }
  return true;
}

/// The shortest text that reads back as `v`.
std::string number_text(double v) {
  std::array<char, 32> buf{};
  const auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return ec == std::errc() ? std::string(buf.data(), end) : std::string("nan");
}

class file_descriptor {
 public:
  explicit file_descriptor(int fd) noexcept : fd_(fd) {}
  ~file_descriptor() {
    if (fd_ >= 0) (void)::close(fd_);
  }
  file_descriptor(const file_descriptor&) = delete;
  file_descriptor& operator=(const file_descriptor&) = delete;
  [[nodiscard]] int get() const noexcept { return fd_; }
  /// Closes now, for the error a close can report (a write-back that failed).
  int close() noexcept {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

/// Writes all of `text` to `fd`; 0, or the errno of the failure (ENOSPC for a full disk).
int write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

}  // namespace

std::filesystem::path cache_dir() {
  // The XDG base directory rules: a relative path in the variable is ignored.
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && xdg[0] == '/') {
    return std::filesystem::path(xdg) / "polymap";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] != '\0') {
    return std::filesystem::path(home) / ".cache" / "polymap";
  }
  return {};
}

std::optional<std::vector<double>> measurement_file::find(std::string_view key,
                                                          std::size_t count) const {
  std::ifstream in(path_);
  std::string line;
  std::string k;
  std::vector<double> values;
  while (std::getline(in, line)) {
    if (parse(line, k, values) && k == key && values.size() == count) return values;
  }
  return std::nullopt;
}

std::string measurement_file::save(std::string_view key, std::span<const double> values) const {
  std::error_code ec;
  std::filesystem::create_directories(path_.parent_path(), ec);
  if (ec) return "cannot make " + path_.parent_path().string() + ": " + ec.message();

  const std::filesystem::path lock_path = path_.string() + ".lock";
  const file_descriptor lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (lock.get() < 0) return system_error("cannot open", lock_path, errno);
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return system_error("cannot lock", lock_path, errno);
  }

  // The other keys' lines, then this key's.
  std::string text;
  {
    std::ifstream in(path_);
    std::string line;
    std::string k;
    std::vector<double> v;
    while (std::getline(in, line)) {
      if (parse(line, k, v) && k != key) text += line + '\n';
    }
  }
  text += key;
  for (const double v : values) text += ' ' + number_text(v);
  text += '\n';

  std::string temp = path_.string() + ".XXXXXX";
  file_descriptor out(::mkostemp(temp.data(), O_CLOEXEC));  // mode 0600
  if (out.get() < 0) return system_error("cannot create a file beside", path_, errno);
  int err = write_all(out.get(), text);
  if (err == 0 && ::fsync(out.get()) != 0) err = errno;
  if (out.close() != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(temp.c_str(), path_.c_str()) != 0) err = errno;
  if (err != 0) {
    (void)::unlink(temp.c_str());
    return system_error("cannot write", path_, err);
  }
  return {};
}

}  // namespace polymap::detail
