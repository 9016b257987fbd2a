// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

// The messages of `polymap run` between rank 0's runner (rank_link) and the other ranks'
// job servers (serve_jobs), on polymap's own communicator. Between two ranks, messages
// with one tag arrive in the order they were sent: a signal for a slot always comes before
// the next start in it, and rank 0 starts a job in a slot only after that slot's last end.

#include "backends/mpi/wire.hpp"
#include "cli/run/rank_link.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace polymap::cli::run::protocol {

// Tags apart from the mpi backend's (1 to 3): the two never share a call, but a stray
// message must not pass for the other's.
constexpr int hello_tag = 40;   // rank -> 0, once: its slots and its host
constexpr int order_tag = 41;   // 0 -> rank: start, signal, finish
constexpr int report_tag = 42;  // rank -> 0: a job's end, a stopping signal

constexpr std::uint32_t magic = 0x706d7275;  // "pmru"

enum class order_kind : std::uint8_t { start = 1, signal = 2, finish = 3 };

struct hello {
  std::uint64_t slots = 0;
  std::string host;
};

inline std::string encode(const hello& h) {
  std::string out;
  detail::mpi::writer w(out);
  w.put(magic);
  w.put(h.slots);
  w.put(h.host);
  return out;
}

inline hello decode_hello(std::string_view bytes) {
  detail::mpi::reader in(bytes);
  if (in.get<std::uint32_t>() != magic) detail::mpi::reader::truncated();
  hello h;
  h.slots = in.get<std::uint64_t>();
  h.host = in.get_text();
  if (!in.at_end()) detail::mpi::reader::truncated();
  return h;
}

/// An order to a rank; `slot` is that rank's own slot (0-based).
struct order {
  order_kind kind = order_kind::finish;
  std::uint32_t slot = 0;
  int signal = 0;                 // order_kind::signal
  std::vector<std::string> argv;  // order_kind::start
};

inline std::string encode(const order& o) {
  std::string out;
  detail::mpi::writer w(out);
  w.put(o.kind);
  w.put(o.slot);
  w.put(static_cast<std::int32_t>(o.signal));
  w.put(static_cast<std::uint64_t>(o.argv.size()));
  for (const std::string& word : o.argv) w.put(word);
  return out;
}

inline order decode_order(std::string_view bytes) {
  detail::mpi::reader in(bytes);
  order o;
  o.kind = in.get<order_kind>();
  o.slot = in.get<std::uint32_t>();
  o.signal = in.get<std::int32_t>();
  o.argv.resize(in.get_count(sizeof(std::uint64_t)));
  for (std::string& word : o.argv) word = in.get_text();
  if (!in.at_end() || o.kind < order_kind::start || o.kind > order_kind::finish) {
    detail::mpi::reader::truncated();
  }
  return o;
}

/// How often a rank looks for messages, which MPI offers no descriptor to wait on: every
/// millisecond after one came, less often the longer none came (a 64th of that time, at most
/// every 50 ms). A job's start or end then waits about 1/64 of the time since the last
/// message at most: short jobs keep the looks frequent, and a long one that keeps a rank
/// waiting costs it 20 looks a second.
/// Monotonic seconds.
inline double clock_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class poll_pace {
 public:
  static constexpr double shortest = 0.001;  // seconds
  static constexpr double longest = 0.05;

  /// A message came, or went, at `now` (monotonic seconds).
  void active(double now) noexcept { last_ = now; }
  /// Seconds until the next look, at `now`.
  [[nodiscard]] double interval(double now) const noexcept {
    return std::clamp((now - last_) / 64, shortest, longest);
  }

 private:
  double last_ = 0;
};

// A report's first byte: a rank_event::kind, or this one, the last report of a rank.
constexpr std::uint8_t finished = 2;

inline std::string encode_finished() { return std::string(1, static_cast<char>(finished)); }

/// A report to rank 0; its `slot` is the sender's own slot.
inline std::string encode(const rank_event& e) {
  std::string out;
  detail::mpi::writer w(out);
  w.put(static_cast<std::uint8_t>(e.what));
  w.put(static_cast<std::uint32_t>(e.slot));
  w.put(static_cast<std::int32_t>(e.wait_status));
  w.put(static_cast<std::int32_t>(e.spawn_error));
  w.put(static_cast<std::uint8_t>(e.signalled ? 1 : 0));
  w.put(static_cast<std::int32_t>(e.signal));
  w.put(e.out);
  w.put(e.err);
  return out;
}

/// The event a report holds; nothing for a rank's last report (encode_finished()).
inline std::optional<rank_event> decode_event(std::string_view bytes) {
  detail::mpi::reader in(bytes);
  rank_event e;
  const auto what = in.get<std::uint8_t>();
  if (what == finished && in.at_end()) return std::nullopt;
  e.what = static_cast<rank_event::kind>(what);
  e.slot = in.get<std::uint32_t>();
  e.wait_status = in.get<std::int32_t>();
  e.spawn_error = in.get<std::int32_t>();
  e.signalled = in.get<std::uint8_t>() != 0;
  e.signal = in.get<std::int32_t>();
  e.out = in.get_text();
  e.err = in.get_text();
  if (!in.at_end() || what > static_cast<std::uint8_t>(rank_event::kind::stopped)) {
    detail::mpi::reader::truncated();
  }
  return e;
}

}  // namespace polymap::cli::run::protocol
