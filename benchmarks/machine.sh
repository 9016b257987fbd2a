# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
#
# Sourced by the benchmark scripts: print_machine prints the "## Machine" block of their
# markdown (date, kernel, CPUs, load, the CPU model), then each line given to it.

print_machine() {
  echo "## Machine"
  echo
  echo '```'
  echo "date:   $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "uname:  $(uname -srm)"
  echo "nproc:  $(nproc)"
  echo "load:   $(cat /proc/loadavg 2>/dev/null || echo '?')"
  lscpu 2>/dev/null | grep -E 'Model name|^CPU\(s\)' || true
  for line in "$@"; do echo "$line"; done
  echo '```'
  echo
}
