// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "backends/mpi/task_farm.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <polymap/detail/remote.hpp>
#include <polymap/detail/run_items.hpp>
#include <polymap/error.hpp>
#include <polymap/options.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "executor.hpp"

namespace polymap::detail::mpi {

namespace {

// Message tags on polymap's own communicator.
constexpr int report_tag = 1;   // worker -> 0: a share_report, the request for a chunk
constexpr int chunk_tag = 2;    // 0 -> worker: the next chunk (empty: no more), and a stop
constexpr int results_tag = 3;  // worker -> 0: the results of the chunk just reported

/// Requests a worker rank keeps ahead of the chunk it runs: one in hand while rank 0
/// answers the next.
constexpr int requests_ahead = 2;

/// Most bytes of fixed-size results in one chunk: they go in one MPI message.
constexpr std::size_t max_chunk_bytes = std::size_t{1} << 29;

/// Rank 0 runs its own chunks between the requests it answers: a fraction of what it hands
/// out, so that no worker waits long for an answer.
constexpr std::size_t own_share_divisor = 4;

/// share_report::result_size of a call whose results are encoded one by one.
constexpr std::uint64_t encoded_results = ~std::uint64_t{0};

std::string describe(const share_report& r) {
  return "items [" + std::to_string(r.begin) + ", " + std::to_string(r.end) + ") with " +
         (r.result_size == 0 ? std::string("no results")
          : r.result_size == encoded_results
              ? std::string("results encoded one by one")
              : "results of " + std::to_string(r.result_size) + " bytes") +
         (r.results_to_rank0 ? " for rank 0 alone" : "");
}

/// Why the call fails on every rank: `rank` said `why` (a polymap error's text, whose own
/// "polymap: " goes).
std::string blamed(int rank, std::string_view why) {
  constexpr std::string_view prefix = "polymap: ";
  if (why.starts_with(prefix)) why.remove_prefix(prefix.size());
  return "polymap: backend mpi: rank " + std::to_string(rank) + ": " + std::string(why);
}

/// FNV-1a of `text`; 0 for none.
std::uint64_t hash_of(const char* text) noexcept {
  if (text == nullptr) return 0;
  std::uint64_t h = 14695981039346656037ULL;
  for (const char* p = text; *p != '\0'; ++p) {
    h = (h ^ static_cast<unsigned char>(*p)) * 1099511628211ULL;
  }
  return h;
}

/// `ranges` sorted, with those that overlap or touch made one.
std::vector<index_range> merged(std::vector<index_range> ranges) {
  std::sort(ranges.begin(), ranges.end(),
            [](const index_range& a, const index_range& b) { return a.begin < b.begin; });
  std::vector<index_range> out;
  for (const index_range& r : ranges) {
    if (r.begin == r.end) continue;
    if (!out.empty() && r.begin <= out.back().end) {
      out.back().end = std::max(out.back().end, r.end);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

}  // namespace

task_farm::task_farm(communicator& comm, const map_job& job)
    : comm_(comm),
      job_(job),
      here_(*job.opts),
      next_(job.begin),
      due_(static_cast<std::size_t>(comm.size()), requests_ahead),
      heard_(static_cast<std::size_t>(comm.size()), 0),
      encoded_in_(static_cast<std::size_t>(comm.size())) {
  here_.backend = backend_kind::automatic;
  here_.report = nullptr;
  here_.comm = {};
  here_.results = polymap::mpi::results::every_rank;
  job_.opts = &here_;
  job_.decided = nullptr;
  stats_.seconds_per_item.store(job.seconds_per_item, std::memory_order_relaxed);
  call_hash_ = hash_of(job.call_type);
  if (const result_transfer* t = job.transfer; t != nullptr && t->deliver != nullptr) {
    if (t->fixed_size != 0 && t->fixed_target != nullptr) {
      result_size_ = t->fixed_size;
      results_ = t->fixed_target(job.ctx);
    } else {
      encoded_ = t->encode != nullptr;  // mpi.cpp refused the call otherwise
    }
  }
  // Where results go matters only to a call that has some (for_each has none).
  results_to_rank0_ =
      job.opts->results == polymap::mpi::results::rank0 && (result_size_ != 0 || encoded_);
}

share_report task_farm::identity() const {
  share_report r;
  r.begin = job_.begin;
  r.end = job_.end;
  r.result_size = encoded_ ? encoded_results : result_size_;
  r.call_type = call_hash_;
  r.results_to_rank0 = results_to_rank0_;
  return r;
}

void task_farm::run(const std::string& refused) {
  error_ = refused;
  if (!error_.empty()) job_.state->request_stop();
  try {
    if (comm_.rank() == 0) {
      due_[0] = 0;  // rank 0 sends itself nothing
      if (!error_.empty()) error_ = blamed(0, error_);
      run_root();
      take_encoded(-1);  // every chunk's results, before they are told or broadcast
    } else {
      run_worker();
    }
    finish();
  } catch (...) {
    // A rank that fails in the middle of its messages (MPI, memory) leaves the others
    // waiting for what it would have sent: the job cannot go on.
    comm_.abort(detail::describe(std::current_exception()));
  }
  if (!error_.empty()) throw error(error_);
}

void task_farm::run_here(index_range chunk) {
  map_job share = job_;
  share.begin = chunk.begin;
  share.end = chunk.end;
  run_state& state = *job_.state;
  const std::size_t before = state.done() + state.failed();
  try {
    ran_on_ |= 1U << static_cast<unsigned>(run_share(share, stats_));
  } catch (const std::exception& e) {
    // This machine's backend failed (not an item: those are failures in the state). The
    // ranks still end the call together: it fails on every one, with this text.
    if (error_.empty()) error_ = e.what();
    state.request_stop();
    return;
  }
  items_here_ += state.done() + state.failed() - before;
  // A backend records the ranges it finished only for a call that has failed by its end;
  // here a later chunk, or another rank, may fail the call. A chunk that was not stopped
  // finished in full (a stopped one failed or was cancelled: its backend recorded them).
  if (!state.stopping()) state.add_worker(chunk, {}, 0, 0);
  // Later chunks are sized from what this one cost (no sampling on the calling thread).
  const double per_item = state.busy_seconds_per_item();
  if (per_item > 0) stats_.seconds_per_item.store(per_item, std::memory_order_relaxed);
}

std::string task_farm::ran_on() const {
  std::string names;
  for (backend_kind kind : all_backends) {
    if ((ran_on_ & (1U << static_cast<unsigned>(kind))) == 0) continue;
    if (!names.empty()) names += " and ";
    names += to_string(kind);
  }
  return names.empty() ? std::string("none") : names;
}

index_range task_farm::take(bool own) {
  if (stopped() || next_ >= job_.end) return {};
  const std::size_t left = job_.end - next_;
  const auto ranks = static_cast<std::size_t>(comm_.size());
  std::size_t n = job_.opts->chunk != 0 ? job_.opts->chunk : (left + 4 * ranks - 1) / (4 * ranks);
  if (own && job_.opts->chunk == 0) n = (n + own_share_divisor - 1) / own_share_divisor;
  if (job_.max_chunk != 0) n = std::min(n, job_.max_chunk);
  if (result_size_ != 0) n = std::min(n, max_chunk_bytes / result_size_);
  n = std::clamp<std::size_t>(n, 1, left);
  const index_range chunk{next_, next_ + n};
  next_ += n;
  return chunk;
}

void task_farm::run_root() {
  if (comm_.size() == 1) {  // nobody to share with: one run on this machine
    if (!stopped() && next_ < job_.end) run_here({next_, job_.end});
    next_ = job_.end;
    return;
  }
  // Every rank's first request is answered before rank 0 runs anything: a rank that asks
  // while rank 0 runs a chunk of its own waits for the end of it, and at the start nobody
  // else has work.
  while (std::find(heard_.begin() + 1, heard_.end(), 0) != heard_.end()) serve_one();
  const auto answered = [this] {
    return std::all_of(due_.begin(), due_.end(), [](int n) { return n == 0; });
  };
  while (true) {
    while (comm_.waiting(report_tag)) serve_one();
    if (const index_range own = take(true); own.begin != own.end) {
      run_here(own);
      continue;
    }
    if (answered()) break;
    serve_one();  // waits for the next report
  }
}

void task_farm::serve_one() {
  const int from = comm_.receive(message_, -1, report_tag);
  share_report r = decode(message_);
  // A rank that refused the call, or whose backend failed, says why first.
  if (!r.error.empty() && error_.empty()) {
    error_ = blamed(from, r.error);
  }
  const share_report mine = identity();
  const bool shapes = r.begin == mine.begin && r.end == mine.end &&
                      r.result_size == mine.result_size &&
                      r.results_to_rank0 == mine.results_to_rank0;
  const bool same = shapes && r.call_type == mine.call_type;
  if (!same && error_.empty()) {
    error_ = "polymap: backend mpi: rank " + std::to_string(from) + " called with " +
             (shapes ? std::string("another function or item type")
                     : describe(r) + ", rank 0 with " + describe(mine)) +
             ": every rank must make the same call on the mpi backend";
  }
  // Only a rank that made the same call is ever given a chunk, within the call's items; a
  // chunk it skipped (after a stop) comes back empty, without results.
  const std::size_t chunk_items = r.chunk.end - r.chunk.begin;
  if (chunk_items != 0 && result_size_ != 0) {
    // Taken while rank 0 goes on: the sender may be in its next chunk (see receive_later).
    comm_.receive_later(results_ + r.chunk.begin * result_size_, chunk_items * result_size_,
                        from, results_tag);
  } else if (chunk_items != 0 && encoded_) {
    take_encoded(from);  // the ones before: one receive open per rank
    encoded_in& in = encoded_in_[static_cast<std::size_t>(from)];
    in.bytes = std::make_unique<std::string>();
    in.chunk = r.chunk;
    comm_.receive_later(*in.bytes, from, results_tag);
  }
  run_state& state = *job_.state;
  if (!r.failures.empty() && job_.opts->on_error == on_error::fail_fast) r.stopping = true;
  for (item_failure& f : r.failures) state.add_failure(std::move(f));
  if (!r.ranges.empty()) {
    const std::vector<index_range> more(r.ranges.begin() + 1, r.ranges.end());
    state.add_worker(r.ranges.front(), more, 0, 0);
  }
  state.add_done(r.done);
  if (r.cancelled) {
    state.cancel();
  } else if (r.stopping) {
    state.request_stop();
  }
  --due_[static_cast<std::size_t>(from)];
  heard_[static_cast<std::size_t>(from)] = 1;

  const index_range next = same ? take(false) : index_range{};
  if (next.begin != next.end) ++due_[static_cast<std::size_t>(from)];
  // The third word says that the call stopped: the rank drops the chunk it holds.
  const std::uint64_t answer[3] = {next.begin, next.end, stopped() ? 1U : 0U};
  comm_.send(answer, sizeof answer, from, chunk_tag);
}

void task_farm::take_encoded(int from) {
  const std::size_t first = from < 0 ? 0 : static_cast<std::size_t>(from);
  const std::size_t last = from < 0 ? encoded_in_.size() : first + 1;
  if (from < 0) {
    comm_.wait_received();
  } else {
    comm_.wait_received(from);
  }
  run_state& state = *job_.state;
  for (std::size_t r = first; r < last && r < encoded_in_.size(); ++r) {
    encoded_in& in = encoded_in_[r];
    if (!in.bytes) continue;
    // A worker's state stops at its own items' failures; not at those of its codec here.
    std::vector<item_failure> lost = decode_results(*in.bytes, in.chunk);
    in.bytes.reset();
    if (!lost.empty() && job_.opts->on_error == on_error::fail_fast) state.request_stop();
    for (item_failure& f : lost) state.add_failure(std::move(f));
  }
}

void task_farm::run_worker() {
  run_state& state = *job_.state;
  std::string out;
  const auto send_report = [&](index_range chunk, std::size_t done) {
    share_report r = identity();
    r.chunk = chunk;
    r.done = done;
    r.stopping = state.stopping();
    r.cancelled = state.cancelled();
    r.error = std::exchange(error_, {});
    auto [failures, ranges] = state.outcome();
    r.failures = std::move(failures);
    r.ranges = merged(std::move(ranges));  // a chunk's may come twice: each result once
    // Sent: this rank's state keeps no copy (rank 0's account replaces it at the end).
    state.set_outcome({}, {}, state.done());
    if (chunk.begin != chunk.end && encoded_) {
      // Encoded before the report, which carries the items whose codec threw as failures.
      comm_.wait_sent();  // the buffer of the last ones is free
      encoded_out_.clear();
      std::vector<item_failure> unsent = encode_results(r.ranges, r.failures, encoded_out_);
      r.done -= std::min<std::uint64_t>(r.done, unsent.size());
      r.failures.insert(r.failures.end(), std::make_move_iterator(unsent.begin()),
                        std::make_move_iterator(unsent.end()));
    }
    out.clear();
    encode(r, out);
    comm_.send(out.data(), out.size(), 0, report_tag);
    if (chunk.begin == chunk.end) return;
    // The results go while the next chunk runs: rank 0 takes them when it next answers,
    // which may be after a chunk of its own. The next chunk writes other items' results.
    if (result_size_ != 0) {
      comm_.send_later(results_ + chunk.begin * result_size_,
                       (chunk.end - chunk.begin) * result_size_, 0, results_tag);
    } else if (encoded_) {
      comm_.send_later(encoded_out_.data(), encoded_out_.size(), 0, results_tag);
    }
  };

  int asked = 0;
  for (; asked < requests_ahead; ++asked) send_report({}, 0);
  std::deque<index_range> held;
  while (asked > 0 || !held.empty()) {
    if (held.empty()) {
      std::uint64_t answer[3] = {0, 0, 0};
      comm_.receive(answer, sizeof answer, 0, chunk_tag);
      --asked;
      if (answer[2] != 0) state.request_stop();
      if (answer[0] < answer[1]) {
        if (answer[0] < job_.begin || answer[1] > job_.end) {
          throw error("polymap: backend mpi: rank 0 handed out items [" +
                      std::to_string(answer[0]) + ", " + std::to_string(answer[1]) +
                      ") beyond this rank's call");
        }
        held.push_back({answer[0], answer[1]});
      }
      continue;
    }
    const index_range chunk = held.front();
    held.pop_front();
    const std::size_t done_before = state.done();
    // A chunk handed out before the stop (here, or one rank 0 told of) is not started, and
    // goes back as no chunk: no results to send.
    const bool run = !state.stopping();
    if (run) run_here(chunk);
    send_report(run ? chunk : index_range{}, state.done() - done_before);
    ++asked;
  }
  comm_.wait_sent();
}

/// The failure of item i whose result its codec could not `verb` ("encode", "decode").
item_failure codec_failure(std::size_t i, const char* verb) {
  return item_failure{.index = i,
                      .backend = backend_kind::mpi,
                      .kind = failure_kind::exception,
                      .what = std::string("its result's codec could not ") + verb +
                              " it: " + detail::describe(std::current_exception()),
                      .signal = 0,
                      .exit_code = 0,
                      .attempts = 1};
}

std::vector<item_failure> task_farm::encode_results(const std::vector<index_range>& ranges,
                                                    const std::vector<item_failure>& failures,
                                                    std::string& out) const {
  std::vector<std::size_t> failed;
  for (const item_failure& f : failures) failed.push_back(f.index);
  std::sort(failed.begin(), failed.end());
  std::vector<item_failure> unsent;
  for (const index_range& range : ranges) {
    for (std::size_t i = range.begin; i < range.end; ++i) {
      if (std::binary_search(failed.begin(), failed.end(), i)) continue;
      const std::size_t head = out.size();
      out.append(2 * sizeof(std::uint64_t), '\0');
      try {
        job_.transfer->encode(job_.ctx, i, out);
      } catch (...) {
        out.resize(head);
        unsent.push_back(codec_failure(i, "encode"));
        continue;
      }
      const std::uint64_t entry[2] = {i, out.size() - head - 2 * sizeof(std::uint64_t)};
      std::memcpy(out.data() + head, entry, sizeof entry);
    }
  }
  return unsent;
}

std::vector<item_failure> task_farm::decode_results(std::string_view bytes,
                                                    index_range within) const {
  std::vector<item_failure> lost;
  while (!bytes.empty()) {
    std::uint64_t entry[2] = {0, 0};
    if (bytes.size() < sizeof entry) break;
    std::memcpy(entry, bytes.data(), sizeof entry);
    bytes.remove_prefix(sizeof entry);
    if (entry[0] < within.begin || entry[0] >= within.end || entry[1] > bytes.size()) break;
    try {
      job_.transfer->deliver(job_.ctx, entry[0], bytes.substr(0, entry[1]));
    } catch (...) {
      lost.push_back(codec_failure(entry[0], "decode"));
    }
    bytes.remove_prefix(entry[1]);
  }
  if (!bytes.empty()) {
    throw error(
        "polymap: backend mpi: results from another rank are not polymap's "
        "(another program's message on polymap's communicator?)");
  }
  return lost;
}

void task_farm::finish() {
  run_state& state = *job_.state;
  std::string bytes;
  std::string results;  // rank 0: the encoded results, made before the outcome is told
  if (comm_.rank() == 0) {
    if (encoded_ && comm_.size() > 1 && error_.empty() && !results_to_rank0_) {
      auto [failures, ranges] = state.outcome();
      for (item_failure& f : encode_results(merged(std::move(ranges)), failures, results)) {
        state.add_failure(std::move(f));
      }
    }
    share_report all = identity();
    all.done = state.done();
    all.stopping = state.stopping();
    all.cancelled = state.cancelled();
    all.error = error_;
    std::tie(all.failures, all.ranges) = state.outcome();
    // Ranges merged: a chunk's may come twice (its backend's and the farm's), and a result
    // moved twice into map_error's partial results would arrive empty.
    all.ranges = merged(std::move(all.ranges));
    state.set_outcome(all.failures, all.ranges, all.done);
    encode(all, bytes);
  }
  comm_.broadcast(bytes);
  if (comm_.rank() != 0) {
    share_report all = decode(bytes);
    if (results_to_rank0_) {
      // Rank 0 keeps the results: no ranges here, from which map_error would take results
      // this rank does not have.
      all.ranges.clear();
      state.set_results_elsewhere();
    }
    state.set_outcome(std::move(all.failures), std::move(all.ranges), all.done);
    if (all.cancelled) state.cancel();
    error_ = std::move(all.error);
  }
  // The call fails on every rank; or it was cancelled, and with no failure it returns no
  // results (cancelled_error), on every rank alike; or rank 0 keeps the results.
  if (!error_.empty() || comm_.size() == 1 || results_to_rank0_) return;
  if (state.cancelled() && !state.has_failures()) return;
  if (result_size_ != 0) {
    comm_.broadcast(results_ + job_.begin * result_size_, (job_.end - job_.begin) * result_size_);
  } else if (encoded_) {
    comm_.broadcast(results);
    if (comm_.rank() == 0) return;
    // A result rank 0 made itself that this rank's codec cannot decode fails here alone:
    // its map_error names it (rank 0 and the others may return it).
    for (item_failure& f : decode_results(results, {job_.begin, job_.end})) {
      state.add_failure(std::move(f));
    }
  }
}

}  // namespace polymap::detail::mpi
