#!/usr/bin/env bash
# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
#
# Installs every Debian 12 package that polymap's build, tests and benchmarks use.
# Idempotent: packages already present are left alone. Run as root (or with sudo).
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config git
  # required: topology and binding
  libhwloc-dev hwloc
  # command-line tool
  libcli11-dev libfmt-dev nlohmann-json3-dev libsqlite3-dev
  # the kokkos backend (Kokkos 3.4, Serial); CUDA comes from NVIDIA's toolkit, not Debian
  libtrilinos-kokkos-dev
  # the mpi backend (Open MPI 4.1) and mpirun for its tests
  libopenmpi-dev openmpi-bin
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # peers measured by the benchmarks, and the script that summarises their runs
  libtbb-dev parallel python3
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
