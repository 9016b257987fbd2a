// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// LeakSanitizer's leak check at exit, turned off in worker processes: an item that calls
// exit() in one runs it in a copy of the caller whose other threads are gone, so everything
// they held looks leaked. The caller itself is still checked.
#include <polymap/detail/execute.hpp>

extern "C" int __lsan_is_turned_off() { return polymap::detail::in_worker_process() ? 1 : 0; }
