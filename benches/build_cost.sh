#!/usr/bin/env bash
# The cost of adopting graceful, in build time: two scratch crates outside the workspace, edition
# 2024, each built with `cargo build -j 2` in a fresh target directory, cold and then after
# `touch src/main.rs`, one after the other in the same run:
#   - `hello-tokio`: tokio with `rt-multi-thread`, `macros`, `signal`, and `#[tokio::main]`;
#   - `hello-graceful`: only `graceful-main` (this checkout, by path), and `#[graceful::main]`.
# Prints each time, their ratios, and `cargo tree -e features` of both. Dependencies are fetched
# before anything is timed. `ROUNDS` (default 2) cold builds of each, alternating; the median.
#
# `graceful-main` comes from a path here, and cargo compiles path dependencies incrementally, which
# it never does for a dependency from crates.io: incremental compilation made the runtime's cold
# build 1.5 times as long. A profile override turns it off for our four crates only, so they
# build as from the registry, and the program's own crate builds as `cargo new` makes it.
#
#   bash benches/build_cost.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

scratch() { # name, dependency lines, attribute
    mkdir -p "$work/$1/src"
    cat > "$work/$1/Cargo.toml" <<TOML
[package]
name = "$1"
version = "0.1.0"
edition = "2024"

[dependencies]
$2

[workspace]
TOML
    cat > "$work/$1/src/main.rs" <<RS
#[$3]
async fn main() {
    println!("hello");
}
RS
    (cd "$work/$1" && cargo fetch -q)
}

scratch hello-tokio 'tokio = { version = "1", features = ["rt-multi-thread", "macros", "signal"] }' tokio::main
scratch hello-graceful "graceful-main = { path = \"$root\" }" graceful::main

seconds() { # crate, target dir: the build's wall time
    local start end
    start=$(date +%s.%N)
    local ours=()
    for package in graceful-main graceful-runtime graceful-macros graceful-options; do
        ours+=(--config "profile.dev.package.$package.incremental=false")
    done
    (cd "$work/$1" && CARGO_TARGET_DIR="$2" cargo build -q -j 2 "${ours[@]}")
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}

declare -A cold rebuild
for round in $(seq "$rounds"); do
    for crate in hello-tokio hello-graceful; do
        target="$work/target-$crate-$round"
        cold[$crate]+="$(seconds "$crate" "$target") "
        touch "$work/$crate/src/main.rs"
        rebuild[$crate]+="$(seconds "$crate" "$target") "
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for crate in hello-tokio hello-graceful; do
    echo "$crate: cold ${cold[$crate]}s, after touching main.rs ${rebuild[$crate]}s"
done
t=$(echo "${cold[hello-tokio]}" | median); g=$(echo "${cold[hello-graceful]}" | median)
rt=$(echo "${rebuild[hello-tokio]}" | median); rg=$(echo "${rebuild[hello-graceful]}" | median)
printf 'cold: %.2fs against %.2fs, %.2fx\n' "$g" "$t" "$(echo "$g / $t" | bc -l)"
printf 'rebuild: %.3fs against %.3fs, %+.0f ms\n' "$rg" "$rt" "$(echo "($rg - $rt) * 1000" | bc -l)"
for crate in hello-tokio hello-graceful; do
    echo "== cargo tree -e features ($crate)"
    (cd "$work/$crate" && cargo tree -q -e features)
done
