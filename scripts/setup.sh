#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian 12 machine.
# Idempotent: running it twice changes nothing the second time.
#
# - libclang-dev: rocksdb's bindgen loads libclang while building librocksdb-sys.
# - postgresql-client: psql, which the end-to-end tests drive like a user.
# - libpostgresql-jdbc-java, default-jdk-headless, python3-venv, nodejs, npm:
#   the client compatibility tests (tests/tests/clients.rs) run pgjdbc,
#   Python drivers (in a venv under target/client-venv) and node-postgres
#   (under tests/clients/node/node_modules) against a real cluster.
# - chromium, chromium-driver: the dashboard's browser test
#   (tests/tests/dashboard.rs) drives headless Chromium through WebDriver.
# - openssl: the gateway's TLS tests (sql-gateway/src/tests/wire.rs) make a
#   throwaway CA and server certificate with the openssl command.
# - The Rust toolchain itself comes with the machine (rustup); protoc is not
#   needed because proto/ compiles .proto files with protox (pure Rust).
#
# `--bench` also installs what only `bench/run` needs (opt-in, so CI's plain
# run stays as fast as before): etcd-server (the 3-member etcd anchor),
# postgresql-15 (initdb, postgres and pgbench for the PostgreSQL anchor; no
# cluster of Debian's is used) and matplotlib in target/client-venv (the
# charts of bench/plot.py).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) bench=1 ;;
    *) echo "setup: unknown option $arg (the only option is --bench)" >&2; exit 2 ;;
  esac
done
packages=(libclang-dev postgresql-client libpostgresql-jdbc-java chromium chromium-driver openssl)
# Runtimes the client tests need; installed from Debian only when absent
# (the machine may bring its own Python, Node or JDK).
command -v javac >/dev/null || packages+=(default-jdk-headless)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3 python3-venv)
command -v npm >/dev/null || packages+=(nodejs npm)

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
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "setup: system packages already present (${packages[*]})"
fi

# Python drivers for the client tests, in a venv the tests find by path.
venv="$root/target/client-venv"
requirements="$root/tests/clients/python/requirements.txt"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { rm -rf "$venv"; echo "setup: python3 -m venv failed" >&2; exit 1; }
fi
if ! cmp -s "$requirements" "$stamp"; then
  echo "setup: installing Python client packages into target/client-venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi

# node-postgres for the client tests.
node_dir="$root/tests/clients/node"
if ! cmp -s "$node_dir/package.json" "$node_dir/node_modules/.package.json.installed" 2>/dev/null; then
  echo "setup: installing node client packages into tests/clients/node/node_modules"
  (cd "$node_dir" && npm install --silent --no-audit --no-fund >/dev/null)
  cp "$node_dir/package.json" "$node_dir/node_modules/.package.json.installed"
fi

if [ "$bench" -eq 1 ]; then
  bench_missing=()
  for package in etcd-server postgresql-15; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      bench_missing+=("$package")
    fi
  done
  if [ "${#bench_missing[@]}" -gt 0 ]; then
    echo "setup: installing ${bench_missing[*]} for bench/run"
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${bench_missing[@]}" >/dev/null
  fi
  if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    echo "setup: installing matplotlib into target/client-venv for bench/plot.py"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check matplotlib
  fi
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
echo "setup: done"
