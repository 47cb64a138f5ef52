#!/bin/sh
# Verifies the unit files in systemd/: `systemd-analyze verify` on the three units, the sysusers
# and tmpfiles snippets applied to an empty root, and each unit's ExecStart= flags run
# through the real binary's `check-config` with the shipped config (systemd/latentd.toml)
# in place of the installed one, so a flag or config key the daemon does not know fails here.
# The binary: $LATENTD_BIN, else /usr/bin/latentd. Exits non-zero on any finding.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found (apt-get install systemd)"; exit 1; }
latentd=${LATENTD_BIN:-/usr/bin/latentd}
[ -x "$latentd" ] || { echo "no latentd binary at $latentd (build it and set LATENTD_BIN)"; exit 1; }
latentd=$(cd "$(dirname "$latentd")" && pwd)/$(basename "$latentd")
mkdir -p "$work/system" "$work/user" "$work/runtime"
chmod 700 "$work/runtime"
sed "s|/usr/bin/latentd|$latentd|" "$here/systemd/latentd.service" >"$work/system/latentd.service"
sed "s|/usr/bin/latentd|$latentd|" "$here/systemd/user/latentd.service" >"$work/user/latentd.service"
# The per-GPU template, verified as an instance (its ConditionPathExists= is not checked).
sed "s|/usr/bin/latentd|$latentd|" "$here/systemd/latentd@.service" >"$work/system/latentd@.service"
status=0
out=$(systemd-analyze verify "$work/system/latentd.service" 2>&1) || status=1
[ -z "$out" ] || { echo "system unit:"; echo "$out"; status=1; }
out=$(systemd-analyze verify "$work/system/latentd@gpu0.service" 2>&1) || status=1
[ -z "$out" ] || { echo "template unit (latentd@gpu0):"; echo "$out"; status=1; }
out=$(XDG_RUNTIME_DIR="$work/runtime" systemd-analyze --user verify "$work/user/latentd.service" 2>&1) || status=1
[ -z "$out" ] || { echo "user unit:"; echo "$out"; status=1; }

# ExecStart= flags, with the installed config path (system: /etc/latentd/latentd.toml, user:
# %E/latentd/latentd.toml) pointing at the shipped one. check-config checks the paths a
# start needs, so its media folder (made by the tmpfiles snippet on a real install) is one
# that exists here.
mkdir -p "$work/media"
sed "s|^folder = \"/srv/latentd/media\"|folder = \"$work/media\"|" "$here/systemd/latentd.toml" >"$work/latentd.toml"
check_flags() { # unit-file
    line=$(grep '^ExecStart=' "$1")
    [ "$(grep -c '^ExecStart=' "$1")" = 1 ] || { echo "$1: expected one ExecStart="; return 1; }
    case "$line" in *--config*) ;; *) echo "$1: ExecStart= does not name --config"; return 1 ;; esac
    args=$(printf '%s\n' "${line#ExecStart=}" | sed \
        -e "s|^[^ ]*latentd||" \
        -e "s|/etc/latentd/latentd.toml|$work/latentd.toml|g" \
        -e "s|%E/latentd/latentd.toml|$work/latentd.toml|g" \
        -e "s|/etc/latentd/%i.toml|$work/latentd.toml|g")
    case "$args" in *%*) echo "$1: unexpanded specifier in ExecStart=$args"; return 1 ;; esac
    # shellcheck disable=SC2086 # the unit's arguments, split as systemd splits them (no quotes used)
    out=$(env -u STATE_DIRECTORY "$latentd" $args check-config 2>&1) || {
        echo "$1: latentd$args check-config:"; echo "$out"; return 1; }
}
check_flags "$here/systemd/latentd.service" || status=1
check_flags "$here/systemd/user/latentd.service" || status=1
check_flags "$here/systemd/latentd@.service" || status=1

# sysusers and tmpfiles snippets, applied to an empty root.
root="$work/root"
mkdir -p "$root/etc"
systemd-sysusers --root="$root" "$here/systemd/latentd.sysusers" >/dev/null 2>&1 || status=1
grep -q '^latentd:x:[0-9]*:[0-9]*:.*:/var/lib/latentd:' "$root/etc/passwd" || { echo "sysusers: no latentd user"; status=1; }
grep -q '^audio:x:[0-9]*:latentd$' "$root/etc/group" || { echo "sysusers: latentd not in audio"; status=1; }
systemd-tmpfiles --root="$root" --create "$here/systemd/latentd.tmpfile" || status=1
[ "$(stat -c %a "$root/srv/latentd/media")" = 2775 ] || { echo "tmpfiles: media folder mode"; status=1; }
[ "$status" = 0 ] && echo "verified: systemd/latentd.service, systemd/latentd@.service, systemd/user/latentd.service (units and ExecStart= flags), latentd.sysusers, latentd.tmpfile"
exit "$status"
