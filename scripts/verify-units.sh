#!/bin/sh
# Verifies the unit files in systemd/ with `systemd-analyze verify`, with /usr/bin/latentd
# replaced by a stand-in executable when it is not installed. Exits non-zero on any finding.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found (apt-get install systemd)"; exit 1; }
latentd=/usr/bin/latentd
[ -x "$latentd" ] || latentd=/bin/true
mkdir -p "$work/system" "$work/user" "$work/runtime"
chmod 700 "$work/runtime"
sed "s|/usr/bin/latentd|$latentd|" "$here/systemd/latentd.service" >"$work/system/latentd.service"
sed "s|/usr/bin/latentd|$latentd|" "$here/systemd/user/latentd.service" >"$work/user/latentd.service"
status=0
out=$(systemd-analyze verify "$work/system/latentd.service" 2>&1) || status=1
[ -z "$out" ] || { echo "system unit:"; echo "$out"; status=1; }
out=$(XDG_RUNTIME_DIR="$work/runtime" systemd-analyze --user verify "$work/user/latentd.service" 2>&1) || status=1
[ -z "$out" ] || { echo "user unit:"; echo "$out"; status=1; }
# sysusers and tmpfiles snippets, applied to an empty root.
root="$work/root"
mkdir -p "$root/etc"
systemd-sysusers --root="$root" "$here/systemd/latentd.sysusers" >/dev/null 2>&1 || status=1
grep -q '^latentd:x:[0-9]*:[0-9]*:.*:/var/lib/latentd:' "$root/etc/passwd" || { echo "sysusers: no latentd user"; status=1; }
grep -q '^audio:x:[0-9]*:latentd$' "$root/etc/group" || { echo "sysusers: latentd not in audio"; status=1; }
systemd-tmpfiles --root="$root" --create "$here/systemd/latentd.tmpfile" || status=1
[ "$(stat -c %a "$root/srv/latentd/media")" = 2775 ] || { echo "tmpfiles: media folder mode"; status=1; }
[ "$status" = 0 ] && echo "verified: systemd/latentd.service, systemd/user/latentd.service, latentd.sysusers, latentd.tmpfile"
exit "$status"
