// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

namespace polymap::test_support {

/// Whether these tests were built with ASan or TSan: such builds refuse memory_limit (their
/// shadow memory fills any address-space cap) and make every fork and atomic far slower.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitizer_build = true;
#else
inline constexpr bool sanitizer_build = false;
#endif

/// Whether these tests were built with ASan, whose allocator (GCC 12's) has no fork handler:
/// a child forked while another thread of the program allocates can wait for ever on its lock.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool asan_build = true;
#else
inline constexpr bool asan_build = false;
#endif

/// Whether these tests were built with TSan, which ends a child forked from a threaded
/// program when the child starts a thread (its `die_after_fork`).
#if defined(__SANITIZE_THREAD__)
inline constexpr bool tsan_build = true;
#else
inline constexpr bool tsan_build = false;
#endif

}  // namespace polymap::test_support
