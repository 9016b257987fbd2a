// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "measurement_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

namespace polymap::detail {
namespace {

std::string error_text(const std::string& what, const std::filesystem::path& p, int err) {
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
  /// Gives the descriptor up to the caller.
  int release() noexcept { return std::exchange(fd_, -1); }
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

/// Removes what a save that died between mkostemp and rename left beside `path`: files named
/// `<name>.XXXXXX` (six letters or digits, as mkostemp makes them). Only for a caller that
/// holds the lock, so that no such file is another save's in progress.
void remove_stale_temporaries(const std::filesystem::path& path) {
  const std::string prefix = path.filename().string() + '.';
  std::error_code ec;
  for (std::filesystem::directory_iterator it(path.parent_path(), ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() != prefix.size() + 6 || !name.starts_with(prefix)) continue;
    const std::string_view tail = std::string_view(name).substr(prefix.size());
    if (std::all_of(tail.begin(), tail.end(), [](unsigned char c) { return std::isalnum(c); })) {
      std::error_code ignored;  // a file that cannot go costs only its space
      std::filesystem::remove(it->path(), ignored);
    }
  }
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

measurement_file::lock::~lock() {
  if (fd_ >= 0) (void)::close(fd_);  // closing releases the record lock
}

measurement_file::lock& measurement_file::lock::operator=(lock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) (void)::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

measurement_file::lock_result measurement_file::take_lock(std::chrono::milliseconds wait) const {
  lock_result r;
  std::error_code ec;
  std::filesystem::create_directories(path_.parent_path(), ec);
  if (ec) {
    r.why_not = "cannot make " + path_.parent_path().string() + ": " + ec.message();
    return r;
  }
  const std::filesystem::path lock_path = path_.string() + ".lock";
  file_descriptor fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (fd.get() < 0) {
    r.why_not = error_text("cannot open", lock_path, errno);
    return r;
  }
  // F_SETLK, polled: F_SETLKW has no time limit, and a process that never lets go must not
  // hang every later one.
  const auto give_up = std::chrono::steady_clock::now() + wait;
  for (;;) {
    struct flock whole {};
    whole.l_type = F_WRLCK;
    whole.l_whence = SEEK_SET;
    if (::fcntl(fd.get(), F_SETLK, &whole) == 0) {
      r.held.emplace(lock(fd.release()));
      return r;
    }
    if (errno != EACCES && errno != EAGAIN && errno != EINTR) {
      r.why_not = error_text("cannot lock", lock_path, errno);  // ENOLCK: NFS with no lockd
      return r;
    }
    if (std::chrono::steady_clock::now() >= give_up) {
      r.busy = true;
      r.why_not = lock_path.string() + " stayed locked by another process for " +
                  std::to_string(wait.count()) + " ms";
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string measurement_file::save(std::string_view key, std::span<const double> values,
                                   const lock& /*held*/) const {
  remove_stale_temporaries(path_);
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
  if (out.get() < 0) return error_text("cannot create a file beside", path_, errno);
  int err = write_all(out.get(), text);
  if (err == 0 && ::fsync(out.get()) != 0) err = errno;
  if (out.close() != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(temp.c_str(), path_.c_str()) != 0) err = errno;
  if (err != 0) {
    (void)::unlink(temp.c_str());
    return error_text("cannot write", path_, err);
  }
  return {};
}

}  // namespace polymap::detail
