// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The CPU quota of this process's cgroup (v2 cpu.max, v1 cpu.cfs_quota_us).
#include "topology/binding.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace polymap::detail {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> first_line(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return std::nullopt;
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  return line;
}

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

std::optional<std::int64_t> to_int(std::string_view text) {
  text = trim(text);
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::optional<double> ratio(std::int64_t quota, std::int64_t period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  return static_cast<double>(quota) / static_cast<double>(period);
}

// cgroup v2: "max 100000" (no limit) or "150000 100000" (1.5 CPUs).
std::optional<double> v2_quota(const fs::path& dir) {
  const auto line = first_line(dir / "cpu.max");
  if (!line) return std::nullopt;
  std::string_view text = trim(*line);
  const auto space = text.find(' ');
  const std::string_view quota = text.substr(0, space);
  if (quota == "max") return std::nullopt;
  const auto value = to_int(quota);
  // The period is optional in what the kernel accepts; it defaults to 100 ms.
  const auto period = space == std::string_view::npos ? std::optional<std::int64_t>(100000)
                                                      : to_int(text.substr(space + 1));
  if (!value || !period) return std::nullopt;
  return ratio(*value, *period);
}

// cgroup v1: cpu.cfs_quota_us (-1: no limit) over cpu.cfs_period_us.
std::optional<double> v1_quota(const fs::path& dir) {
  const auto quota_line = first_line(dir / "cpu.cfs_quota_us");
  if (!quota_line) return std::nullopt;
  const auto quota = to_int(*quota_line);
  if (!quota || *quota < 0) return std::nullopt;
  const auto period_line = first_line(dir / "cpu.cfs_period_us");
  if (!period_line) return std::nullopt;
  const auto period = to_int(*period_line);
  if (!period) return std::nullopt;
  return ratio(*quota, *period);
}

// "/a/b" -> {"a", "b"}. A path with ".." lies outside the mounted hierarchy (another
// cgroup namespace); only the root of the mount is then looked at.
std::vector<std::string> components(std::string_view path) {
  std::vector<std::string> parts;
  path = trim(path);
  while (!path.empty()) {
    const auto slash = path.find('/');
    const std::string_view part = path.substr(0, slash);
    if (part == "..") return {};
    if (!part.empty() && part != ".") parts.emplace_back(part);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

// The smallest quota from the cgroup up to the root of the hierarchy mounted at `base`:
// a quota set on a parent also limits every cgroup below it. Looking at the parents also
// finds the quota when the path is not visible under `base` (a container without a cgroup
// namespace sees its own cgroup mounted as the root).
template <class Read>
std::optional<double> smallest_up_to_root(const fs::path& base, std::vector<std::string> parts,
                                          Read read) {
  std::optional<double> smallest;
  while (true) {
    fs::path dir = base;
    for (const std::string& part : parts) dir /= part;
    if (const auto quota = read(dir); quota && (!smallest || *quota < *smallest)) {
      smallest = quota;
    }
    if (parts.empty()) break;
    parts.pop_back();
  }
  return smallest;
}

bool directory_exists(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec);
}

bool file_exists(const fs::path& file) {
  std::error_code ec;
  return fs::exists(file, ec);
}

std::optional<double> smaller(std::optional<double> a, std::optional<double> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

}  // namespace

std::optional<double> cgroup_cpu_quota(const std::string& cgroup_fs_root,
                                       std::string_view proc_self_cgroup) {
  try {
    const fs::path root(cgroup_fs_root);
    std::optional<double> quota;
    std::string_view text = proc_self_cgroup;
    while (!text.empty()) {
      const auto newline = text.find('\n');
      const std::string_view line = text.substr(0, newline);
      text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);

      // "hierarchy-id:controller,list:/path"; the path itself may hold ':'.
      const auto first = line.find(':');
      if (first == std::string_view::npos) continue;
      const auto second = line.find(':', first + 1);
      if (second == std::string_view::npos) continue;
      const std::string_view id = line.substr(0, first);
      const std::string_view controllers = line.substr(first + 1, second - first - 1);
      const auto parts = components(line.substr(second + 1));

      if (id == "0" && controllers.empty()) {
        // cgroup v2, mounted at the root, or at <root>/unified in the hybrid layout.
        quota = smaller(quota, smallest_up_to_root(root, parts, v2_quota));
        const fs::path unified = root / "unified";
        if (!file_exists(root / "cgroup.controllers") && directory_exists(unified)) {
          quota = smaller(quota, smallest_up_to_root(unified, parts, v2_quota));
        }
        continue;
      }

      bool has_cpu = false;
      for (std::string_view rest = controllers; !rest.empty();) {
        const auto comma = rest.find(',');
        if (rest.substr(0, comma) == "cpu") has_cpu = true;
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      }
      if (!has_cpu) continue;
      // cgroup v1: the hierarchy is mounted under its controller list ("cpu,cpuacct"),
      // usually with "cpu" as a link to it.
      for (const fs::path& base : {root / std::string(controllers), root / "cpu,cpuacct",
                                   root / "cpuacct,cpu", root / "cpu"}) {
        if (directory_exists(base)) {
          quota = smaller(quota, smallest_up_to_root(base, parts, v1_quota));
          break;
        }
      }
    }
    return quota;
  } catch (...) {
    return std::nullopt;
  }
}

}  // namespace polymap::detail
