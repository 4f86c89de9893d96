#!/usr/bin/env bash
# Set up streampii on a fresh Debian machine: system packages, a virtualenv in .venv, pinned
# Python packages. Safe to run again: it only installs what is missing.
#
#   bash scripts/setup.sh          # then: .venv/bin/streampii watch samples/street.mp4 --blur
#
# System packages: ffmpeg (benchmarks, segment recording tests) and GStreamer's RTSP server
# (a real camera on loopback for the live-input tests). Skipped when they are present, or
# with STREAMPII_NO_APT=1 (the product itself needs none of them: PyAV carries its FFmpeg).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav)

if [[ "${STREAMPII_NO_APT:-0}" != 1 ]] && command -v apt-get >/dev/null; then
  missing=()
  for package in "${APT_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    echo "setup: apt-get install ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
# constraints.txt pins torch to the CPU wheel and torchvision to its pair: unpinned, pip would
# pull gigabytes of CUDA packages. Every install goes through it.
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
echo "setup: ready ($(.venv/bin/streampii --version))"
