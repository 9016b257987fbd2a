// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/backend.hpp>

#include <gtest/gtest.h>

#include <string>

namespace polymap::test {

/// Names a parameterised test after its backend: "Threads", "Serial", "Automatic".
inline std::string backend_name(const testing::TestParamInfo<backend_kind>& info) {
  std::string name(to_string(info.param));
  name[0] = static_cast<char>(name[0] - 'a' + 'A');
  return name;
}

}  // namespace polymap::test
