#!/usr/bin/env bash
# Installs, upgrades and purges the Debian package on this machine and checks each step
# against docs/operations.md ("Install"). For a disposable Debian machine, as root; systemd
# need not be running (CI has none as PID 1), so the unit is checked as the enable symlink
# and the daemon is run by hand as the `latentd` user, the way the unit would run it.
#
#   scripts/verify-deb.sh FIRST.deb UPGRADE.deb
#   scripts/verify-deb.sh [BUILD-DEB OPTIONS...]   build both with scripts/build-deb.sh
#                                                  (e.g. --profile dev --prebuilt --strip)
#
# 1. apt-get install ./FIRST.deb: every path in operations.md's table is installed by the
#    package (the text files equal their sources in the repository), the config is a
#    conffile, `latentd` is a system user in audio/video/render, the unit is enabled,
#    /srv/latentd/media exists, `latentd check-config /etc/latentd/latentd.toml` passes;
#    latentd, run as `latentd` on the installed config (null audio), plays the packaged
#    gm-tiny model on the packaged ONNX Runtime (named in /status, audible in its meters) and
#    saves a knob set over OSC to /var/lib/latentd/state.json.
# 2. The config is edited; UPGRADE.deb (a higher version; repacked here to ship a changed
#    default config, so dpkg has a conffile conflict to settle) is installed with
#    --force-confold: the edit is kept (the new default lands in .dpkg-dist), dpkg reports the
#    new version and its files, the state file is untouched and the new binary restores it.
# 3. apt-get purge: /var/lib/latentd, the config and the enable symlink are gone; the user
#    (Debian never deletes system users) and /srv/latentd/media (the operator's files) stay.
# Exits 1 with "verify-deb: FAIL: ..." on the first failed check; the package is purged on
# any exit and /srv/latentd removed if this run made it, so the machine is left as it was
# (except the `latentd` user, by design).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

# dpkg's status word for latentd: installed, config-files, ..., or none.
package_state() { dpkg-query -W -f='${db:Status-Status}' latentd 2>/dev/null || echo none; }
fail() { echo "verify-deb: FAIL: $*" >&2; exit 1; }
step() { echo "verify-deb: $*" >&2; }

[[ $(id -u) == 0 ]] || fail "must run as root (it installs and purges the package)"
[[ -f /etc/debian_version ]] && command -v apt-get >/dev/null ||
    fail "not a Debian system (no /etc/debian_version or apt-get)"
case $(package_state) in none | not-installed) ;; *)
    fail "latentd's dpkg state here is '$(package_state)'; this script installs and purges it, so purge it first (apt-get purge latentd)" ;;
esac

work=$(mktemp -d)
daemon_pid=
# The package's tmpfiles.d snippet makes /srv/latentd/media, which purge leaves (it holds
# the operator's media files); remove it at the end if this run made it.
srv_was_there=$([[ -e /srv/latentd ]] && echo yes || echo no)
cleanup() {
    [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    if [[ $(package_state) != none && $(package_state) != not-installed ]]; then
        step "purging latentd after a failure"
        apt-get purge -y -q latentd >/dev/null 2>&1 || echo "verify-deb: could not purge latentd" >&2
    fi
    [[ $srv_was_there == no ]] && rm -rf /srv/latentd
    rm -rf "$work"
}
trap cleanup EXIT

if [[ $# == 2 && $1 == *.deb && $2 == *.deb ]]; then
    first=$(realpath "$1") upgrade=$(realpath "$2")
else
    step "building the packages: scripts/build-deb.sh $*"
    first=$("$here/scripts/build-deb.sh" "$@" --fast -o "$work/first") ||
        fail "scripts/build-deb.sh $* failed"
    upgrade=$("$here/scripts/build-deb.sh" "$@" --fast --deb-revision 2 -o "$work/upgrade") ||
        fail "scripts/build-deb.sh $* --deb-revision 2 failed"
fi
first_version=$(dpkg-deb -f "$first" Version) || fail "$first is not a .deb"
upgrade_version=$(dpkg-deb -f "$upgrade" Version) || fail "$upgrade is not a .deb"
dpkg --compare-versions "$upgrade_version" gt "$first_version" ||
    fail "the upgrade package's version $upgrade_version is not above the first's, $first_version"

export DEBIAN_FRONTEND=noninteractive
config=/etc/latentd/latentd.toml
state_dir=/var/lib/latentd
osc_port=47770

installed_version() { dpkg-query -W -f='${Version}' latentd; }

check_enabled() { # when
    link=/etc/systemd/system/multi-user.target.wants/latentd.service
    [[ -L $link ]] || fail "$1: the unit is not enabled ($link is not a symlink)"
    [[ $(readlink -f "$link") == "$(readlink -f /usr/lib/systemd/system/latentd.service)" ]] ||
        fail "$1: $link points to $(readlink "$link"), not the packaged unit"
}

# Runs the installed latentd as the unit would (user latentd, $STATE_DIRECTORY, the installed
# config) with the null output and a private OSC port, runs "$@" against it, then stops it
# with SIGTERM and requires exit status 0.
with_daemon() {
    # setpriv execs (runuser would stay the parent and take the SIGTERM itself).
    setpriv --reuid=latentd --regid=latentd --init-groups env STATE_DIRECTORY="$state_dir" \
        /usr/bin/latentd --config "$config" --audio null --osc "127.0.0.1:$osc_port" --oscquery-port 0 --log-target stderr \
        2>"$work/daemon.log" &
    daemon_pid=$!
    ready=no
    for _ in $(seq 100); do
        /usr/bin/latentctl --port "$osc_port" --timeout 0.2 status >/dev/null 2>&1 && ready=yes && break
        kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; fail "the installed latentd exited at start"; }
        sleep 0.1
    done
    [[ $ready == yes ]] || { cat "$work/daemon.log" >&2
        fail "the installed latentd did not answer /status on port $osc_port within 30 s"; }
    "$@" || { cat "$work/daemon.log" >&2; fail "'$*' against the installed latentd failed"; }
    kill -TERM "$daemon_pid"
    status=0
    wait "$daemon_pid" || status=$?
    daemon_pid=
    [[ $status == 0 ]] || { cat "$work/daemon.log" >&2; fail "the installed latentd exited with status $status on SIGTERM"; }
}

# 1. Install.
step "installing $first ($first_version)"
apt-get install -y -q "$first" >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; fail "apt-get install $first failed"; }
[[ $(installed_version) == "$first_version" ]] || fail "dpkg reports version $(installed_version), not $first_version"

# Every path in operations.md's "The package installs" table.
mapfile -t table < <(awk '/^The package installs:/ { on = 1; next } on && /^\|/ { print; seen = 1; next }
    seen { exit }' "$here/docs/operations.md" | cut -d'|' -f2 | grep -o '`/[^`]*`' | tr -d '`' | sort -u)
((${#table[@]} >= 8)) || fail "found ${#table[@]} paths in docs/operations.md's install table, expected at least 8"
dpkg -L latentd >"$work/files"
for path in "${table[@]}"; do
    [[ -f $path ]] || fail "$path (docs/operations.md) is not installed"
    grep -qx "$path" "$work/files" || fail "$path exists but the package does not own it (dpkg -L latentd)"
done
[[ -x /usr/bin/latentd && -x /usr/bin/latentctl ]] || fail "/usr/bin/latentd or /usr/bin/latentctl is not executable"
for pair in "$config:systemd/latentd.toml" \
    "/usr/lib/systemd/system/latentd.service:systemd/latentd.service" \
    "/usr/lib/systemd/system/latentd@.service:systemd/latentd@.service" \
    "/usr/lib/systemd/user/latentd.service:systemd/user/latentd.service" \
    "/usr/lib/sysusers.d/latentd.conf:systemd/latentd.sysusers" \
    "/usr/lib/tmpfiles.d/latentd.conf:systemd/latentd.tmpfile" \
    "/usr/share/doc/latentd/operations.md:docs/operations.md" \
    "/usr/lib/latentd/libonnxruntime.so:.ort/libonnxruntime.so" \
    "/usr/share/doc/latentd/onnxruntime/LICENSE:.ort/LICENSE" \
    "/usr/share/doc/latentd/onnxruntime/ThirdPartyNotices.txt:.ort/ThirdPartyNotices.txt"; do
    cmp -s "${pair%%:*}" "$here/${pair#*:}" || fail "${pair%%:*} differs from ${pair#*:}"
done
for file in "$here"/models/gm-tiny/*; do
    installed=/usr/share/latentd/models/gm-tiny/$(basename "$file")
    cmp -s "$installed" "$file" || fail "$installed differs from models/gm-tiny/$(basename "$file") (or is missing)"
done
dpkg-query -W -f='${Conffiles}\n' latentd | grep -q "^ $config " || fail "$config is not a conffile"

id latentd >/dev/null 2>&1 || fail "no latentd user"
(($(id -u latentd) < 1000)) || fail "latentd is not a system user (uid $(id -u latentd))"
for group in audio video render; do
    id -nG latentd | tr ' ' '\n' | grep -qx "$group" || fail "latentd is not in group $group (groups: $(id -nG latentd))"
done
check_enabled "after install"
[[ -d /srv/latentd/media ]] || fail "/srv/latentd/media (tmpfiles.d) was not created"
[[ $(stat -c '%a %U %G' /srv/latentd/media) == "2775 latentd audio" ]] ||
    fail "/srv/latentd/media is $(stat -c '%a %U %G' /srv/latentd/media), expected 2775 latentd audio"
/usr/bin/latentd check-config "$config" >"$work/check.out" 2>&1 ||
    { cat "$work/check.out" >&2; fail "latentd check-config $config failed"; }

# The installed config plays the packaged gm-tiny on the packaged ONNX Runtime, and it is
# heard: /status names both and the output's peak rises above -60 dBFS within 30 s.
plays_gm_tiny() {
    local expected='^backend +bundle: gm-tiny \(onnx bundle, ONNX Runtime CPU provider, /usr/(bin/\.\./)?lib/latentd/libonnxruntime\.so\)$'
    for _ in $(seq 60); do
        /usr/bin/latentctl --port "$osc_port" --timeout 0.5 status >"$work/status.out" 2>&1 || true
        if grep -qE "$expected" "$work/status.out" &&
            awk '$1 == "peak_dbfs_1" && $2 > -60 { found = 1 } END { exit !found }' "$work/status.out"; then
            return 0
        fi
        sleep 0.5
    done
    echo "verify-deb: expected backend '$expected' and peak_dbfs_1 above -60; last status:" >&2
    cat "$work/status.out" >&2
    return 1
}

step "running the installed latentd as user latentd"
# What the unit's StateDirectory= makes before the first start.
install -d -o latentd -g latentd -m 0750 "$state_dir"
with_daemon plays_gm_tiny
with_daemon /usr/bin/latentctl --port "$osc_port" --tcp send /knob/denoise 0.73
[[ -f $state_dir/state.json ]] || fail "latentd saved no $state_dir/state.json"
[[ $(stat -c %U "$state_dir/state.json") == latentd ]] || fail "$state_dir/state.json is not owned by latentd"
grep -q '"denoise": *0\.73' "$state_dir/state.json" ||
    fail "$state_dir/state.json does not hold denoise 0.73: $(cat "$state_dir/state.json")"
cp "$state_dir/state.json" "$work/state.before"

# 2. Upgrade, over an edited config and a changed shipped one.
step "editing $config, upgrading to $upgrade_version with --force-confold"
sed -i 's/^level = "info"/level = "warn"/' "$config"
echo '# edited by scripts/verify-deb.sh' >>"$config"
grep -q '^level = "warn"' "$config" || fail "could not edit log.level in $config"
cp "$config" "$work/config.edited"
dpkg-deb -R "$upgrade" "$work/repack"
echo '# a changed default, shipped by the upgrade package' >>"$work/repack$config"
cp "$work/repack$config" "$work/config.shipped"
(cd "$work/repack" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)
dpkg-deb -b -Zgzip "$work/repack" "$work/upgrade.deb" >/dev/null
apt-get install -y -q -o Dpkg::Options::=--force-confold "$work/upgrade.deb" >"$work/apt.log" 2>&1 ||
    { cat "$work/apt.log" >&2; fail "apt-get install (upgrade) failed"; }
[[ $(installed_version) == "$upgrade_version" ]] ||
    fail "after the upgrade dpkg reports $(installed_version), not $upgrade_version"
cmp -s "$config" "$work/config.edited" ||
    fail "the config edit did not survive the upgrade: $(diff "$work/config.edited" "$config")"
cmp -s "$config.dpkg-dist" "$work/config.shipped" || fail "the upgrade's default config is not in $config.dpkg-dist"
# Every file but the edited conffile matches the upgrade package's checksums.
dpkg --verify latentd >"$work/verify" 2>&1 || true
grep -v " c $config\$" "$work/verify" && fail "installed files differ from the upgrade package (dpkg --verify above)"
dpkg-deb --fsys-tarfile "$work/upgrade.deb" | tar -xO ./usr/bin/latentd | cmp -s - /usr/bin/latentd ||
    fail "/usr/bin/latentd is not the upgrade package's binary"
cmp -s "$state_dir/state.json" "$work/state.before" || fail "$state_dir/state.json changed during the upgrade"
check_enabled "after the upgrade"
/usr/bin/latentd check-config "$config" >"$work/check.out" 2>&1 ||
    { cat "$work/check.out" >&2; fail "latentd check-config $config failed after the upgrade"; }
grep -qx 'level = "warn"' "$work/check.out" ||
    fail "check-config does not show the edited log.level: $(cat "$work/check.out")"
expect_restored() {
    out=$(/usr/bin/latentctl --port "$osc_port" query /knob/denoise) || return 1
    grep -qx '/knob/denoise 0\.73' <<<"$out" ||
        { echo "the upgraded latentd did not restore denoise 0.73: $out" >&2; return 1; }
}
with_daemon expect_restored

# 3. Purge.
step "purging"
apt-get purge -y -q latentd >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; fail "apt-get purge latentd failed"; }
case $(package_state) in none | not-installed) ;; *) fail "latentd's dpkg state after purge is '$(package_state)'" ;; esac
for gone in "$state_dir" "$config" "$config.dpkg-dist" /usr/bin/latentd \
    /etc/systemd/system/multi-user.target.wants/latentd.service; do
    [[ -e $gone || -L $gone ]] && fail "$gone is still there after purge"
done
id latentd >/dev/null 2>&1 || fail "purge removed the latentd user (it should stay)"
[[ -d /srv/latentd/media ]] || fail "purge removed /srv/latentd/media (the operator's media files; it should stay)"
step "ok: install, upgrade ($first_version -> $upgrade_version, config edit and state kept) and purge"
