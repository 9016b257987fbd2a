// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Everything polymap offers a CPU-only program: map, map_into, map_async, imap,
/// for_each, explain, options, errors, topology.

#include <polymap/backend.hpp>
#include <polymap/codec.hpp>
#include <polymap/config.hpp>
#include <polymap/error.hpp>
#include <polymap/imap.hpp>
#include <polymap/job.hpp>
#include <polymap/map.hpp>
#include <polymap/options.hpp>
#include <polymap/plan.hpp>
#include <polymap/progress.hpp>
#include <polymap/shared_memory.hpp>
#include <polymap/topology.hpp>
#include <polymap/version.hpp>
