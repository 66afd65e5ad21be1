#!/usr/bin/env bash
# Builds the console: the `frontend` crate to wasm, wasm-bindgen's JS glue, and the stylesheet,
# into target/site/pkg as orrery.{js,wasm,css} (the names <HydrationScripts/> asks for).
# `build-console.sh clippy` lints the browser-side code instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
PROFILE=${WASM_PROFILE:-wasm-release}
PKG=target/site/pkg
mode=$(cat target/.wasm-toolchain 2>/dev/null || echo rustup)
locked=(); [ "${CI:-}" = true ] && locked=(--locked)
wasm_cargo() {
  local sub=$1; shift
  if [ "$mode" = rustup ]; then
    cargo "$sub" -q "${locked[@]}" -p orrery-frontend --target wasm32-unknown-unknown --target-dir target/front "$@"
  else
    # Debian's rustc-web has no prebuilt wasm std: build it from rust-web-src, link with wasm-ld.
    RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld \
      /usr/bin/cargo "$sub" -q "${locked[@]}" -p orrery-frontend --target wasm32-unknown-unknown \
      -Zbuild-std=std,panic_abort --target-dir target/front "$@"
  fi
}
if [ "${1:-}" = clippy ]; then
  wasm_cargo clippy -- -D warnings
  exit 0
fi
wasm_cargo build --lib --profile "$PROFILE"
out=$PROFILE; [ "$PROFILE" = dev ] && out=debug
mkdir -p "$PKG"
strip=(); [ "$PROFILE" != dev ] && strip=(--remove-name-section --remove-producers-section)
wasm-bindgen --target web --no-typescript "${strip[@]}" --out-dir "$PKG" --out-name orrery \
  "target/front/wasm32-unknown-unknown/$out/frontend.wasm"
mv -f "$PKG/orrery_bg.wasm" "$PKG/orrery.wasm"
cp style/main.css "$PKG/orrery.css"
