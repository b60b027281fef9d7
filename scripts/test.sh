#!/usr/bin/env bash
# Runs every test of ferromq on a fresh Debian machine with Rust installed:
#   1. installs what the tests need (Debian packages with apt-get, Python clients into
#      .venv under the repo),
#   2. checks formatting and lints,
#   3. runs `cargo test --workspace`,
#   4. runs the interop suite (real third-party clients against the built broker), which
#      includes the browser test (headless Chromium driven by interop/browser/run.mjs).
# Needs no standard input; safe to run again (installs only what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR=never
# A one-off build gains nothing from the incremental cache, which is as large as the
# build itself; disk is the scarce thing on a CI machine.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }
disk() { df -h . | tail -1; }
step "free disk: $(disk)"

# --- Debian packages -------------------------------------------------------------------
apt_packages=()
command -v python3 >/dev/null || apt_packages+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_packages+=(python3-venv)
# The ActiveMQ JMS client and a JDK for tests/openwire.rs.
[ -f /usr/share/java/activemq-client.jar ] || apt_packages+=(libactivemq-java)
command -v javac >/dev/null || apt_packages+=(openjdk-17-jdk-headless)
command -v mosquitto_sub >/dev/null || apt_packages+=(mosquitto-clients)
command -v node >/dev/null || apt_packages+=(nodejs)
command -v npm >/dev/null || apt_packages+=(npm)
# The browser test: Debian's Chromium, driven from Node with playwright-core.
[ -x /usr/bin/chromium ] || apt_packages+=(chromium)
if [ ${#apt_packages[@]} -gt 0 ]; then
  step "installing Debian packages: ${apt_packages[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi

# --- Python clients --------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  python3 -m venv .venv
fi
step "installing Python test clients"
.venv/bin/python -m pip install -q --disable-pip-version-check -r interop/requirements.txt

# --- Node clients (pinned by package-lock.json) ----------------------------------------
if [ ! -d interop/node-mqtt/node_modules/mqtt ]; then
  step "installing Node test clients"
  (cd interop/node-mqtt && npm ci --no-audit --no-fund --silent)
fi
# --- Node packages of the browser test ------------------------------------------------
step "installing the browser test's Node packages"
(cd interop/browser && npm ci --no-audit --no-fund --loglevel=error)

# --- Rust ------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo test --workspace"
cargo build --bin ferromq
cargo test --workspace

step "free disk after the build: $(disk)"

# --- interop ---------------------------------------------------------------------------
step "interop suite"
FERROMQ_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/ferromq" .venv/bin/python -m pytest interop -q -p no:cacheprovider
