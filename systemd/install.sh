#!/usr/bin/env bash
# Install edgeoff's daemons as systemd services on this host (Raspberry Pi OS / Debian / Ubuntu; as root).
#
#   sudo systemd/install.sh --dry-run     # print what it would do, change nothing
#   sudo systemd/install.sh               # user, venv, units, env files; then systemctl daemon-reload
#
# Idempotent: run it again after `git pull` to upgrade the venv and the units. It never overwrites an
# existing /etc/edgeoff/*.env (your settings) and never touches /etc/edgeoff/secrets/ beyond creating it.
# It enables and starts nothing: see systemd/README.md for `systemctl enable --now edgeoff-site@ed`.
#
# Environment: PYTHON (default python3, >= 3.11), PREFIX (default /opt/edgeoff), ETC (default /etc/edgeoff),
# UNIT_DIR (default /etc/systemd/system), PIP_EXTRA_INDEX_URL (armv7 without Raspberry Pi OS's piwheels
# configuration: https://www.piwheels.org/simple).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
PREFIX=${PREFIX:-/opt/edgeoff}
ETC=${ETC:-/etc/edgeoff}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
USER_NAME=edgeoff
DRY_RUN=0

for arg in "$@"; do
  case "$arg" in
    --dry-run | -n) DRY_RUN=1 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

# Print each action; run it unless --dry-run.
do_() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (or with --dry-run)" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "install.sh: $PYTHON is missing or older than 3.11 (Debian/Raspberry Pi OS 12: apt-get install python3-venv)" >&2
  exit 1
fi

# 1. A dedicated system user without a shell or a home of its own (state lives in StateDirectory).
if id -u "$USER_NAME" >/dev/null 2>&1; then
  echo "= user $USER_NAME exists"
else
  do_ useradd --system --user-group --home-dir /var/lib/edgeoff --no-create-home \
    --shell /usr/sbin/nologin --comment "edgeoff daemons" "$USER_NAME"
fi

# 2. The venv, owned by root (the daemons cannot modify their own code), with the project installed.
if [ -x "$PREFIX/venv/bin/python" ]; then
  echo "= venv $PREFIX/venv exists: upgrading edgeoff in it"
else
  do_ install -d -m 0755 "$PREFIX"
  do_ "$PYTHON" -m venv "$PREFIX/venv"
fi
do_ "$PREFIX/venv/bin/pip" install --no-cache-dir --quiet --upgrade pip
do_ "$PREFIX/venv/bin/pip" install --no-cache-dir --quiet --upgrade "$SRC"
do_ install -m 0644 "$SRC/README.md" "$PREFIX/README.md"

# 3. Settings: example env files (mode 0600), never overwritten;
#    the secrets directory for the broker passwords (root only: systemd hands each daemon its own password).
do_ install -d -m 0755 "$ETC"
do_ install -d -m 0700 "$ETC/secrets"
for daemon in site worker agent; do
  if [ -e "$ETC/$daemon.env" ]; then
    echo "= $ETC/$daemon.env exists: kept"
  else
    do_ install -m 0600 "$SRC/systemd/env/$daemon.env" "$ETC/$daemon.env"
  fi
done

# 4. The units, then a reload so systemd sees them.
[ -d "$UNIT_DIR" ] || do_ install -d -m 0755 "$UNIT_DIR"
for unit in edgeoff-site@.service edgeoff-worker.service edgeoff-agent.service; do
  do_ install -m 0644 "$SRC/systemd/$unit" "$UNIT_DIR/$unit"
done
if [ "$DRY_RUN" = 1 ] || [ -d /run/systemd/system ]; then
  do_ systemctl daemon-reload
else
  echo "= systemd is not running here: skipped systemctl daemon-reload"
fi

cat <<EOF

Next (systemd/README.md):
  1. secrets: brokers/make-passwords.py --secrets $ETC/secrets (on the broker host; copy passwords/<account>)
  2. settings: edit $ETC/site.env, worker.env, agent.env (broker host, Redis URL with its password)
  3. start:    systemctl enable --now edgeoff-site@ed   (edgeoff-worker, edgeoff-agent likewise)
EOF
