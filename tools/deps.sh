#!/usr/bin/env bash
# Install the Debian packages nkern needs, only those missing.  Needs root (or sudo) when
# something is missing.
set -euo pipefail
pkgs=(gcc make libopenblas-dev liblapacke-dev zlib1g-dev dataset-fashion-mnist python3-numpy gnuplot-nox
      libopenmpi-dev openmpi-bin libscalapack-openmpi-dev python3-cffi python3-pytest python3-sklearn python3-matplotlib python3-pip
      python3-venv pkg-config man-db)
# `tools/deps.sh bench`: also the benchmark's peers (PyTorch, for bench/peer_*.py)
[ "${1:-}" = bench ] && pkgs+=(python3-torch)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
