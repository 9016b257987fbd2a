// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "backends/mpi/share_report.hpp"

#include "backends/mpi/wire.hpp"

namespace polymap::detail::mpi {

namespace {

constexpr std::uint32_t magic = 0x706d6170;  // "pmap"

}  // namespace

void encode(const share_report& r, std::string& out) {
  writer w(out);
  w.put(magic);
  w.put(r.begin);
  w.put(r.end);
  w.put(r.result_size);
  w.put(r.call_type);
  w.put(static_cast<std::uint64_t>(r.chunk.begin));
  w.put(static_cast<std::uint64_t>(r.chunk.end));
  w.put(r.done);
  w.put(static_cast<std::uint8_t>((r.stopping ? 1 : 0) | (r.cancelled ? 2 : 0) |
                                  (r.results_to_rank0 ? 4 : 0)));
  w.put(std::string_view(r.error));
  w.put(static_cast<std::uint64_t>(r.ranges.size()));
  for (const index_range& range : r.ranges) {
    w.put(static_cast<std::uint64_t>(range.begin));
    w.put(static_cast<std::uint64_t>(range.end));
  }
  w.put(static_cast<std::uint64_t>(r.failures.size()));
  for (const item_failure& f : r.failures) {
    w.put(static_cast<std::uint64_t>(f.index));
    w.put(static_cast<std::int32_t>(f.backend));
    w.put(static_cast<std::int32_t>(f.kind));
    w.put(static_cast<std::int32_t>(f.signal));
    w.put(static_cast<std::int32_t>(f.exit_code));
    w.put(static_cast<std::uint32_t>(f.attempts));
    w.put(std::string_view(f.what));
  }
}

share_report decode(std::string_view bytes) {
  reader in(bytes);
  if (in.get<std::uint32_t>() != magic) reader::truncated();
  share_report r;
  r.begin = in.get<std::uint64_t>();
  r.end = in.get<std::uint64_t>();
  r.result_size = in.get<std::uint64_t>();
  r.call_type = in.get<std::uint64_t>();
  r.chunk.begin = in.get<std::uint64_t>();
  r.chunk.end = in.get<std::uint64_t>();
  r.done = in.get<std::uint64_t>();
  const auto flags = in.get<std::uint8_t>();
  r.stopping = (flags & 1) != 0;
  r.cancelled = (flags & 2) != 0;
  r.results_to_rank0 = (flags & 4) != 0;
  r.error = in.get_text();
  r.ranges.resize(in.get_count(2 * sizeof(std::uint64_t)));
  for (index_range& range : r.ranges) {
    range.begin = in.get<std::uint64_t>();
    range.end = in.get<std::uint64_t>();
  }
  constexpr std::size_t failure_bytes = 2 * sizeof(std::uint64_t) + 5 * sizeof(std::int32_t);
  r.failures.resize(in.get_count(failure_bytes));
  for (item_failure& f : r.failures) {
    f.index = in.get<std::uint64_t>();
    f.backend = static_cast<backend_kind>(in.get<std::int32_t>());
    f.kind = static_cast<failure_kind>(in.get<std::int32_t>());
    f.signal = in.get<std::int32_t>();
    f.exit_code = in.get<std::int32_t>();
    f.attempts = in.get<std::uint32_t>();
    f.what = in.get_text();
  }
  if (!in.at_end() || r.chunk.begin > r.chunk.end) reader::truncated();
  return r;
}

}  // namespace polymap::detail::mpi
