#!/usr/bin/env bash
# Installs the Debian packages mlsan-live needs, when they are missing and we are root.
# Idempotent: does nothing when everything is present. Not root: says what to install.
set -euo pipefail
PKGS=(libportaudio2 "$@")
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "mlsan-live: please install these system packages: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
  exit 0
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
