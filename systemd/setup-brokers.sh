#!/usr/bin/env bash
# Set up Mosquitto and Redis from Debian's packages with edgeoff's configuration (brokers/) on this host: the
# broker node of systemd/README.md §1. Run it as root from the checkout, after systemd/install.sh (it uses
# the installed venv, /opt/edgeoff/venv, to generate the secrets and render the configuration).
#
#   sudo systemd/setup-brokers.sh                     # listen on 127.0.0.1 (brokers and daemons on one host)
#   sudo systemd/setup-brokers.sh --listen 0.0.0.0    # listen on every interface (sites on other machines)
#   sudo systemd/setup-brokers.sh --local-env         # also fill /etc/edgeoff/*.env for daemons on this host
#
# What it does, in order (idempotent: run it again after adding a site; passwords are kept):
#   1. apt-get install mosquitto mosquitto-clients redis-server (if missing)
#   2. brokers/make-passwords.py --secrets /etc/edgeoff/secrets (root only, 0700): one password per account,
#      Mosquitto's passwd and ACL, the Redis password. Extra arguments after `--` go to make-passwords.py
#      (e.g. -- --sites ed,ec,er,cd,ef).
#   3. copies that the broker users can read: /etc/edgeoff/brokers/mosquitto-secrets/{passwd,acl} (group
#      mosquitto, 0440) and /etc/edgeoff/brokers/redis-secrets/redis-auth.conf (owner redis, 0400); Debian's
#      mosquitto and redis users cannot enter /etc/edgeoff/secrets
#   4. brokers/ rendered for this host into /etc/edgeoff/brokers/{mosquitto,redis}/ (data in
#      /var/lib/mosquitto and /var/lib/redis), read from this checkout (not from the installed package)
#   5. drop-ins that point Debian's mosquitto.service and redis-server.service at those files, then
#      enable and restart both
# Environment: PREFIX (default /opt/edgeoff), ETC (default /etc/edgeoff).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/edgeoff}
ETC=${ETC:-/etc/edgeoff}
LISTEN=127.0.0.1
LOCAL_ENV=0
PASSWORD_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) LISTEN=${2:?--listen needs an address}; shift 2 ;;
    --local-env) LOCAL_ENV=1; shift ;;
    --) shift; PASSWORD_ARGS=("$@"); break ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "setup-brokers.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "setup-brokers.sh: run as root" >&2; exit 1; }
PY=$PREFIX/venv/bin/python
[ -x "$PY" ] || { echo "setup-brokers.sh: $PY missing: run systemd/install.sh first" >&2; exit 1; }

# 1. The packages.
missing=()
for pkg in mosquitto mosquitto-clients redis-server; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "+ apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# 2. The secrets (root only).
install -d -m 0755 "$ETC"
"$PY" "$SRC/brokers/make-passwords.py" --secrets "$ETC/secrets" "${PASSWORD_ARGS[@]}"

# 3. What each broker reads, readable by its user only.
install -d -m 0755 "$ETC/brokers"
install -d -m 0750 -o root -g mosquitto "$ETC/brokers/mosquitto-secrets"
install -m 0440 -o root -g mosquitto "$ETC/secrets/passwd" "$ETC/secrets/acl" "$ETC/brokers/mosquitto-secrets/"
install -d -m 0750 -o redis -g redis "$ETC/brokers/redis-secrets"
install -m 0400 -o redis -g redis "$ETC/secrets/redis-auth.conf" "$ETC/brokers/redis-secrets/"

# 4. brokers/ rendered for this host, from this checkout.
LISTEN="$LISTEN" ETC="$ETC" SRC="$SRC" "$PY" - <<'EOF'
import os
from pathlib import Path

from launcher.brokers import write_mosquitto_config, write_redis_config

etc, src, listen = Path(os.environ["ETC"]), Path(os.environ["SRC"]) / "brokers", os.environ["LISTEN"]
write_mosquitto_config(
    etc / "brokers" / "mosquitto",
    secrets_dir=etc / "brokers" / "mosquitto-secrets",
    data_dir=Path("/var/lib/mosquitto"),
    port=1883,
    host=None if listen == "0.0.0.0" else listen,
    run_as="mosquitto",
    brokers_dir=src,
)
write_redis_config(
    etc / "brokers" / "redis",
    secrets_dir=etc / "brokers" / "redis-secrets",
    data_dir=Path("/var/lib/redis"),
    port=6379,
    bind=listen,
    brokers_dir=src,
)
EOF
chmod -R a+rX "$ETC/brokers/mosquitto" "$ETC/brokers/redis"

# 5. Debian's units, pointed at the rendered files.
install -d -m 0755 /etc/systemd/system/mosquitto.service.d /etc/systemd/system/redis-server.service.d
cat > /etc/systemd/system/mosquitto.service.d/edgeoff.conf <<EOF
# Written by edgeoff's systemd/setup-brokers.sh: the broker configuration of brokers/, rendered for this host.
[Service]
ExecStart=
ExecStart=/usr/sbin/mosquitto -c $ETC/brokers/mosquitto/mosquitto.conf
EOF
cat > /etc/systemd/system/redis-server.service.d/edgeoff.conf <<EOF
# Written by edgeoff's systemd/setup-brokers.sh: the Redis configuration of brokers/, rendered for this host.
[Service]
ExecStart=
ExecStart=/usr/bin/redis-server $ETC/brokers/redis/redis.conf --supervised systemd --daemonize no
EOF
systemctl daemon-reload
systemctl enable --quiet mosquitto redis-server
systemctl restart mosquitto redis-server

# Optionally: the daemons of this host use these brokers (placeholders of the example env files only).
if [ "$LOCAL_ENV" = 1 ]; then
  password=$(cat "$ETC/secrets/redis-password")
  for env in "$ETC"/site.env "$ETC"/worker.env "$ETC"/agent.env; do
    [ -f "$env" ] || continue
    sed -i -e "s|^\(EDGEOFF_[A-Z]*_BROKER__HOST\)=.*|\1=127.0.0.1|" \
           -e "s|^\(EDGEOFF_[A-Z]*_REDIS__URL\)=.*|\1=redis://:$password@127.0.0.1:6379/0|" "$env"
  done
  echo "= $ETC/{site,worker,agent}.env: broker and Redis on 127.0.0.1"
fi
echo "brokers ready: mosquitto and redis-server on $LISTEN (systemctl status mosquitto redis-server)"
