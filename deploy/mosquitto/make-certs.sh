#!/usr/bin/env bash
# Makes everything the moe-edge Mosquitto config (mosquitto.conf, acl) needs in
# OUT_DIR: a test CA (ca.pem, ca.key), a server certificate signed by it
# (server.pem, server.key) and a password file (passwd).
#
#   deploy/mosquitto/make-certs.sh OUT_DIR
#
# Users and passwords come from OUT_DIR/users ("name password" per line) if it
# exists; otherwise the users of the example ACL (edge-1, host-1, app-a, app-b)
# get random passwords, written to OUT_DIR/users (mode 600).
# The server certificate's names: $MOE_EDGE_BROKER_SAN
# (default "IP:127.0.0.1,DNS:localhost"); set it to the broker's real name.
# This is a test CA for a lab or a first deployment: keep ca.key off the broker
# and use your own PKI in production. Needs openssl and mosquitto_passwd.
set -euo pipefail

out=${1:?usage: make-certs.sh OUT_DIR}
san=${MOE_EDGE_BROKER_SAN:-IP:127.0.0.1,DNS:localhost}
days=${MOE_EDGE_CERT_DAYS:-365}
mkdir -p "$out"
cd "$out"
umask 077

for tool in openssl mosquitto_passwd; do
    command -v "$tool" >/dev/null || { echo "make-certs.sh: $tool is not installed" >&2; exit 1; }
done

ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days "$days" \
    -subj "/CN=moe-edge test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=moe-edge broker" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out server.pem -days "$days" -extfile server.ext 2>/dev/null
rm -f server.csr server.ext ca.srl

if [ ! -f users ]; then
    for u in edge-1 host-1 app-a app-b; do
        echo "$u $(openssl rand -hex 16)"
    done > users
fi
rm -f passwd
: > passwd
while read -r user pass; do
    [ -z "${user:-}" ] && continue
    case "$user" in \#*) continue ;; esac
    mosquitto_passwd -b passwd "$user" "$pass" 2>/dev/null
done < users
# Mosquitto reads these after dropping privileges; ca.key stays private.
chmod 644 ca.pem server.pem
chmod 640 server.key passwd
echo "make-certs.sh: wrote ca.pem server.pem server.key passwd (users: $(cut -d' ' -f1 users | grep -v '^#' | tr '\n' ' ')) to $out"
