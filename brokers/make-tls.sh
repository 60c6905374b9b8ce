#!/usr/bin/env bash
# Make a local certificate authority and a server certificate for the Mosquitto TLS listener.
#
#   brokers/make-tls.sh [--secrets DIR] [--force-ca] [NAME ...]
#
# Writes DIR/tls/ (default brokers/secrets/tls/, git-ignored; keys mode 0600):
#   ca.key, ca.crt          the local CA (kept across runs unless --force-ca, so clients keep trusting it)
#   server.key, server.crt  a new server certificate on every run, signed by the CA, for localhost,
#                           127.0.0.1, ::1 and every NAME given (a DNS name, or an IPv4/IPv6 address), e.g.
#                           `mosquitto` (the compose service) or the broker's LAN name and address.
# Clients trust ca.crt (BrokerSettings tls.ca_file, MQTT Explorer's "server certificate (CA)").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
secrets="$here/secrets"
force_ca=0
names=()
while [ $# -gt 0 ]; do
    case "$1" in
        --secrets) secrets="${2:?--secrets needs a directory}"; shift 2 ;;
        --force-ca) force_ca=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "make-tls.sh: unknown option $1" >&2; exit 2 ;;
        *) names+=("$1"); shift ;;
    esac
done

if ! command -v openssl >/dev/null 2>&1; then
    echo "make-tls.sh: openssl not found (Debian/Ubuntu: apt-get install openssl)" >&2
    exit 2
fi

tls="$secrets/tls"
mkdir -p "$tls"
chmod 700 "$secrets" "$tls"
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Subject alternative names: what clients verify (the common name is ignored by modern TLS clients).
san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "${names[@]+"${names[@]}"}"; do
    if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then
        san="$san,IP:$name"
    else
        san="$san,DNS:$name"
    fi
done

if [ "$force_ca" = 1 ] || [ ! -s "$tls/ca.key" ] || [ ! -s "$tls/ca.crt" ]; then
    cat >"$work/ca.ext" <<'EOF'
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
    openssl ecparam -name prime256v1 -genkey -noout -out "$tls/ca.key"
    # Self-signed with exactly these extensions (portable across OpenSSL 1.1 and 3.x).
    openssl req -new -sha256 -key "$tls/ca.key" -subj "/CN=edgeoff local CA" -out "$work/ca.csr"
    openssl x509 -req -sha256 -days 3650 -in "$work/ca.csr" -signkey "$tls/ca.key" \
        -extfile "$work/ca.ext" -out "$tls/ca.crt" 2>/dev/null
    echo "made a new CA: $tls/ca.crt (clients must trust this file)"
fi

cat >"$work/server.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = $san
EOF
openssl ecparam -name prime256v1 -genkey -noout -out "$tls/server.key"
openssl req -new -sha256 -key "$tls/server.key" -subj "/CN=edgeoff broker" -out "$work/server.csr"
openssl x509 -req -sha256 -days 825 -in "$work/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -extfile "$work/server.ext" -out "$tls/server.crt" 2>/dev/null
chmod 600 "$tls/ca.key" "$tls/server.key"
chmod 644 "$tls/ca.crt" "$tls/server.crt"
openssl verify -CAfile "$tls/ca.crt" "$tls/server.crt" >/dev/null
echo "made $tls/server.crt for $san"
