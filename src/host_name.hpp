// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

namespace polymap::detail {

/// This machine's name (gethostname), or "?" when it cannot be had.
[[nodiscard]] std::string host_name();

}  // namespace polymap::detail
