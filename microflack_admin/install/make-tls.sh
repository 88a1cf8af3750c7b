#!/usr/bin/env bash
# The load balancer's TLS certificate, in $MF_HOME/tls (folder 700, keys
# 600). By default a local certificate authority made once (ca.crt, the
# certificate browsers and clients are told to trust: README, and its key
# ca.key) signs a certificate for this host's names and addresses; it is
# made again when those change or within 30 days of its end. With
# TLS_CERT=<PEM file holding the certificate chain and its key> the
# operator's certificate is used instead. HAProxy reads lb.pem.
# Names and addresses: localhost, 127.0.0.1, this host's name,
# MICROFLACK_IP, LB_BIND, and TLS_NAMES (more, comma-separated).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"

[ $# -eq 0 ] || usage "" "creates $MF_HOME/tls/lb.pem (and a local CA, unless TLS_CERT is given)"
command -v openssl >/dev/null || die "openssl is missing: run install/setup-host.sh"

dir="$MF_HOME/tls"
mkdir -p "$dir"
chmod 700 "$dir"
umask 077

if [ -n "${TLS_CERT:-}" ]; then
  [ -r "$TLS_CERT" ] || die "TLS_CERT=$TLS_CERT: no such readable file"
  openssl x509 -in "$TLS_CERT" -noout 2>/dev/null ||
    die "TLS_CERT=$TLS_CERT holds no PEM certificate"
  openssl pkey -in "$TLS_CERT" -noout 2>/dev/null ||
    die "TLS_CERT=$TLS_CERT holds no private key (HAProxy wants the chain and the key in one PEM file)"
  cp "$TLS_CERT" "$dir/lb.pem.new"
  mv "$dir/lb.pem.new" "$dir/lb.pem"
  rm -f "$dir/lb.names"
  log "the load balancer uses the certificate of $TLS_CERT"
  exit 0
fi

# san_of NAMES...: the subjectAltName value of these names and addresses.
san_of() {
  local name san=""
  for name in "$@"; do
    if [[ "$name" =~ ^[0-9]+(\.[0-9]+){3}$ ]]; then
      san+="${san:+,}IP:$name"
    elif [[ "$name" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$ ]]; then
      san+="${san:+,}DNS:$name"
    else
      die "'$name' is neither an IPv4 address nor a host name (TLS_NAMES)"
    fi
  done
  printf '%s\n' "$san"
}

names=(localhost 127.0.0.1 "$(hostname)" "$MICROFLACK_IP")
if [ -n "${LB_BIND:-}" ]; then names+=("$LB_BIND"); fi
if [ -n "${TLS_NAMES:-}" ]; then
  IFS=, read -ra extra <<< "$TLS_NAMES"
  names+=("${extra[@]}")
fi
# Each once, in a stable order; 0.0.0.0 (listening everywhere) names no host.
mapfile -t names < <(printf '%s\n' "${names[@]}" | grep -v '^0\.0\.0\.0$' |
  grep -v '^$' | sort -u)
san="$(san_of "${names[@]}")"

if [ ! -f "$dir/ca.key" ] || [ ! -f "$dir/ca.crt" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$dir/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 \
    -subj "/O=MicroFlack/CN=MicroFlack local CA ($(hostname))" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt.new"
  mv "$dir/ca.crt.new" "$dir/ca.crt"
  chmod 644 "$dir/ca.crt"
  rm -f "$dir/lb.names"
  log "made a local certificate authority: $dir/ca.crt (trust it: README)"
fi

if [ -f "$dir/lb.pem" ] && [ "$(cat "$dir/lb.names" 2>/dev/null)" = "$san" ] &&
    openssl x509 -in "$dir/lb.pem" -noout -checkend $((30 * 86400)) >/dev/null; then
  log "the load balancer's certificate is current ($san)"
  exit 0
fi
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
  -out "$dir/lb.key" 2>/dev/null
openssl req -new -key "$dir/lb.key" -subj "/O=MicroFlack/CN=${names[0]}" \
  -out "$dir/lb.csr"
openssl x509 -req -in "$dir/lb.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days 397 -sha256 \
  -extfile <(printf '%s\n' "subjectAltName=$san" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth") \
  -out "$dir/lb.crt" 2>/dev/null
cat "$dir/lb.crt" "$dir/ca.crt" "$dir/lb.key" > "$dir/lb.pem.new"
mv "$dir/lb.pem.new" "$dir/lb.pem"
rm -f "$dir/lb.csr"
printf '%s\n' "$san" > "$dir/lb.names"
log "made the load balancer's certificate for $san"
