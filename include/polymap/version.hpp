// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/config.hpp>

#include <string_view>

namespace polymap {

/// The version of the polymap headers, "major.minor.patch".
inline constexpr std::string_view version = POLYMAP_VERSION_STRING;

/// The version of the compiled library (may differ from the headers after an upgrade).
[[nodiscard]] std::string_view library_version() noexcept;

}  // namespace polymap
