#!/usr/bin/env bash
# Builds upstream PythonQt (the binding 3D Slicer embeds) against Debian's Qt 5.15 with the QtCore and QtGui
# wrappers, then the test host (host.cpp) and the launcher stand-in (launcher.cpp), into a cache folder
# outside git, and prints that folder. A finished build of the same sources is reused.
#
#   Testing/pythonqt_host/build.sh            build when missing, print the folder
#   Testing/pythonqt_host/build.sh --built    print the folder if it is built, else exit 1 (never builds)
#   SPINESEGDIFF_CACHE=DIR                     cache root (default ~/.cache/spinesegdiff)
#   PYTHONQT_ARCHIVE=FILE                      the PythonQt source archive (default ../shared/vendor/pythonqt/*.tar.xz)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
archive="${PYTHONQT_ARCHIVE:-$(ls "$repo"/../shared/vendor/pythonqt/pythonqt-*.tar.xz 2>/dev/null | head -n 1)}"
cache="${SPINESEGDIFF_CACHE:-$HOME/.cache/spinesegdiff}"
recipe=1  # raise when the build steps below change what they produce
packages=(qtbase5-dev qtbase5-private-dev qt5-qmake python3-dev g++ make pkg-config)

say() { echo "pythonqt_host: $*" >&2; }

if [ -z "$archive" ] || [ ! -f "$archive" ]; then
  say "the PythonQt source archive was not found (expected ../shared/vendor/pythonqt/pythonqt-*.tar.xz beside"
  say "the checkout); set PYTHONQT_ARCHIVE=/path/to/pythonqt-<commit>.tar.xz"
  exit 1
fi
key="$( (cat "$archive" "$here"/host.cpp "$here"/launcher.cpp "$here"/*.pro; echo "recipe $recipe") | sha256sum | cut -c1-12)"
out="$cache/pythonqt-host-$key"
if [ -x "$out/bin/spinesegdiff-pythonqt-host" ] && [ -x "$out/bin/spinesegdiff-launcher" ]; then
  echo "$out"
  exit 0
fi
[ "${1:-}" != "--built" ] || exit 1

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
    exit 1
  fi
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

embed="$(pkg-config --list-all | grep -o '^python-3\.[0-9]*-embed' | sort -V | tail -n 1)"
version="${embed#python-}"; version="${version%-embed}"
[ -n "$version" ] || { say "no python-3.X-embed pkg-config entry (install python3-dev)"; exit 1; }
jobs="$(nproc)"
work="$out.partial"
rm -rf "$work" && mkdir -p "$work/build/src" "$work/build/extensions/PythonQt_QtAll" "$work/host" "$work/launcher"
started=$SECONDS
say "building PythonQt ($(basename "$archive"), Python $version) in $work"
tar -xJf "$archive" -C "$work"
source_dir="$work/pythonqt"
qmake_args=(PYTHON_VERSION="$version" PKGCONFIG+="$embed" "PYTHONQTALL_CONFIG=PythonQtCore PythonQtGui"
            "QMAKE_CXXFLAGS+=-w")
(cd "$work/build/src" && qmake "$source_dir/src/src.pro" "${qmake_args[@]}" && make -s -j"$jobs") >"$work/build.log" 2>&1 \
  || { tail -n 30 "$work/build.log" >&2; exit 1; }
(cd "$work/build/extensions/PythonQt_QtAll" && qmake "$source_dir/extensions/PythonQt_QtAll/PythonQt_QtAll.pro" \
  "${qmake_args[@]}" && make -s -j"$jobs") >>"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; exit 1; }
say "PythonQt built in $((SECONDS - started)) s"
host_args=(PYTHONQT_SOURCE="$source_dir" PYTHONQT_LIB="$out/lib" PYTHON_VERSION="$version" PYTHON_EMBED="$embed")
mkdir -p "$work/lib" "$work/bin"
cp -P "$work"/build/lib/lib*.so* "$work/lib/"
(cd "$work/host" && qmake "$here/host.pro" "${host_args[@]}" PYTHONQT_LIB="$work/lib" QMAKE_RPATHDIR+="$out/lib" \
  && make -s && cp spinesegdiff-pythonqt-host "$work/bin/") >>"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; exit 1; }
(cd "$work/launcher" && qmake "$here/launcher.pro" && make -s && cp spinesegdiff-launcher "$work/bin/") \
  >>"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; exit 1; }
rm -rf "$work/build" "$work/pythonqt" "$work/host" "$work/launcher"
rm -rf "$out" && mv "$work" "$out"
say "PythonQt host ready in $((SECONDS - started)) s"
echo "$out"
