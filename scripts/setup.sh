#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian 12 machine.
# Idempotent: running it twice changes nothing the second time.
#
# - libclang-dev: rocksdb's bindgen loads libclang while building librocksdb-sys.
# - postgresql-client: psql, which the end-to-end tests drive like a user.
# - The Rust toolchain itself comes with the machine (rustup); protoc is not
#   needed because proto/ compiles .proto files with protox (pure Rust).
set -euo pipefail

packages=(libclang-dev postgresql-client)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
else
  echo "setup: system packages already present (${packages[*]})"
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
echo "setup: done"
