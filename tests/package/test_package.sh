#!/usr/bin/env bash
# The Debian packages, installed into a temporary root (dpkg -x, never system-wide): their
# names and contents, the SONAME, the relocatable mongoq.pc, and examples/producer.c built
# against the unpacked tree with pkg-config and with find_package(mongoq CONFIG). Exits 77
# (skipped) without dpkg-deb or cpack.
#
#   tests/package/test_package.sh SOURCE_DIR
set -euo pipefail
src=$1
for tool in dpkg-deb cpack pkg-config cc cmake; do
    command -v "$tool" >/dev/null || { echo "skipped: no $tool"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$src/scripts/package" "$tmp/build" >"$tmp/debs" 2>"$tmp/package.err" || {
    cat "$tmp/package.err" >&2
    fail "scripts/package"
}
mapfile -t debs <"$tmp/debs"
names=$(for d in "${debs[@]}"; do dpkg-deb -f "$d" Package; done | sort | tr '\n' ' ')
[ "$names" = "libmongoq-dev libmongoq0 mongoq-tools " ] || fail "packages: $names"
echo "packages: $names"
root=$tmp/root
for d in "${debs[@]}"; do dpkg -x "$d" "$root"; done

lib=$(find "$root" -name 'libmongoq.so.*.*' | head -1)
[ -n "$lib" ] || fail "no versioned shared library"
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
[ "$soname" = "libmongoq.so.0" ] || fail "SONAME $soname"
echo "SONAME: $soname"
[ -x "$root/usr/bin/mongoq" ] || fail "no /usr/bin/mongoq"
[ -f "$root/usr/share/man/man1/mongoq.1" ] || fail "no man page"
[ -f "$root/usr/include/mongoq/mongoq.h" ] || fail "no headers"
libdir=$(dirname "$lib")
LD_LIBRARY_PATH=$libdir "$root/usr/bin/mongoq" --help | grep -q '^usage: mongoq' || fail "mongoq --help"

# pkg-config from the unpacked tree: every path points into it.
pc=$(find "$root" -name mongoq.pc | head -1)
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs mongoq)
inc=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --variable=includedir mongoq)
[ "$(realpath "$inc")" = "$(realpath "$root/usr/include")" ] ||
    fail "pkg-config is not relocatable: includedir $inc"
cc -std=c11 -D_POSIX_C_SOURCE=200809L -o "$tmp/producer-pc" "$src/examples/producer.c" $flags || fail "build with pkg-config"
echo "pkg-config: $flags"

# find_package(mongoq CONFIG) from the unpacked tree.
mkdir -p "$tmp/proj"
cat >"$tmp/proj/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(uses_mongoq C)
find_package(mongoq CONFIG REQUIRED)
add_executable(producer "$src/examples/producer.c")
target_link_libraries(producer PRIVATE mongoq::mongoq)
CMAKE
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$root/usr" >"$tmp/cmake.log" 2>&1 ||
    { cat "$tmp/cmake.log" >&2; fail "find_package"; }
cmake --build "$tmp/proj/build" >"$tmp/cmake-build.log" 2>&1 ||
    { cat "$tmp/cmake-build.log" >&2; fail "build with find_package"; }
grep -q "mongoq_DIR:PATH=$root" "$tmp/proj/build/CMakeCache.txt" || fail "found another mongoq"
echo "find_package: $(grep mongoq_DIR:PATH "$tmp/proj/build/CMakeCache.txt")"
echo "package test passed"
