#!/usr/bin/env bash
# Regenerates the seed corpus in corpus/<target>/ (see README.md). Needs bash, openssl and
# printf; the keys are throwaway and made fresh on every run, so the PEM seeds change each time.
set -euo pipefail
cd "$(dirname "$0")/corpus"
rm -f config/* csr/* cert_identity/* params/* vpn_plan/*
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- config: 1.2's two example files, a VPN plan, and a few refusals -------------------------
cat > config/director-cfg-example-1.2 <<'EOF'
[conpaas]
# Path to ConPaaS conf dir
CONF_DIR = /etc/cpsdirector
# Path to certificates
CERT_DIR = /etc/cpsdirector/certs

# VPN_BASE_NETWORK = 172.16.0.0
# VPN_NETMASK = 255.240.0.0
# VPN_SERVICE_BITS = 5

[iaas]
# OTHER_CLOUDS = cloud1,cloud2
# DRIVER = ec2
# USER =
# PASSWORD =
# REGION = ec2.us-west-2.amazonaws.com
# IMAGE_ID = ami-0933a239
# SIZE_ID = t1.micro

[director]
DEBUG = true
DATABASE_URI = sqlite:////etc/cpsdirector/director.db
#DIRECTOR_URL = https://director.example.org:5555
EOF
cat > config/director-cfg-multicloud-1.2 <<'EOF'
[conpaas]
CONF_DIR = /etc/cpsdirector
CERT_DIR = /etc/cpsdirector/certs

[iaas]
DRIVER = opennebula
IMAGE_ID = 42
INST_TYPE = small
USER = oneadmin
PASSWORD = password
URL = http://occi-server.example.org:4567
NET_ID = 1
NET_GATEWAY = gateway.example.org
NET_NAMESERVER = 8.8.8.8
NET_NETMASK = 255.255.255.0
OS_ARCH = x86_64
OS_ROOT = hda
DISK_TARGET = hda
CONTEXT_TARGET = hdc
OTHER_CLOUDS = ec2virginia, amsterdam

[ec2virginia]
DRIVER = ec2
USER = EC2USERNAME
PASSWORD = EC2PASSWORD
SECURITY_GROUP_NAME = my_securitygroup
KEY_NAME = my_keyname
REGION = ec2.us-east-1.amazonaws.com
IMAGE_ID = ami-bb780cd2
SIZE_ID = t1.micro

[director]
DATABASE_URI = sqlite:////etc/cpsdirector/director.db
DIRECTOR_URL = https://director.example.org:5555
EOF
# The same, as this director accepts it: gateways as addresses, a section for every cloud.
sed -e 's/^NET_GATEWAY = .*/NET_GATEWAY = 192.0.2.1/' config/director-cfg-multicloud-1.2 \
  > config/multicloud-accepted
printf '\n[amsterdam]\nDRIVER = opennebula\nIMAGE_ID = 2\nINST_TYPE = small\nUSER = oneadmin\nPASSWORD = pw\nURL = http://occi.example.org:4567\nNET_ID = 1\nNET_GATEWAY = 192.0.2.1\nNET_NAMESERVER = 8.8.8.8\nNET_NETMASK = 255.255.255.0\nOS_ARCH = x86_64\nOS_ROOT = hda\nDISK_TARGET = hda\nCONTEXT_TARGET = hdc\n' \
  >> config/multicloud-accepted
cat > config/vpn-and-ours <<'EOF'
[conpaas]
CONF_DIR = /var/lib/conpaas
CERT_DIR = %(CONF_DIR)s/certs
VPN_BASE_NETWORK = 172.16.0.0
VPN_NETMASK = 255.240.0.0
VPN_SERVICE_BITS = 5
VPN_LEGACY_SUBNETS = yes
KEY_ALGORITHM = ecdsa
MAX_CREDIT = 50

[iaas]
DRIVER = dummy

[director]
DATABASE_URI = postgresql://conpaas:secret@db.example.org/conpaas
DIRECTOR_URL = https://[2001:db8::1]:5555
OPEN_REGISTRATION = on
DB_MAX_CONNECTIONS = 4
EOF
printf '[conpaas]\nVPN_NETMASK = 255.0.255.0\nMAX_CREDIT = fifty\nUNKNOWN = 1\n[director\nDEBUG\n' \
  > config/refused-values
printf '[director]\nDIRECTOR_URL = https://h\xff\xfe:5555\n' > config/not-utf8
printf '\xef\xbb\xbf[conpaas]\r\nCONF_DIR: /etc/cpsdirector\r\n  continued\r\n; comment\r\n' \
  > config/bom-crlf-continuation

# --- csr: what 1.2 managers send (SHA-1, RSA-2048), and others the CA accepts or refuses ------
agent_subject='/UID=3/serviceLocator=101/O=ConPaaS/emailAddress=info@conpaas.eu/CN=ConPaaS/role=agent'
openssl req -new -newkey rsa:2048 -nodes -keyout "$work/rsa.key" -sha1 \
  -subj "$agent_subject" -out csr/agent-rsa2048-sha1.pem 2>/dev/null
openssl req -new -key "$work/rsa.key" -sha256 -subj '/CN=ConPaaS' -out csr/rsa2048-sha256.pem
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ec.key" \
  -subj "$agent_subject" -out csr/ecdsa-p256.pem 2>/dev/null
openssl req -new -newkey rsa:1024 -nodes -keyout "$work/small.key" -subj '/CN=small' \
  -out csr/rsa1024-refused.pem 2>/dev/null
sed 's/CERTIFICATE REQUEST/NEW CERTIFICATE REQUEST/' csr/rsa2048-sha256.pem > csr/new-label.pem
# A flipped byte in the middle of the body: the signature no longer verifies.
awk 'NR==5 { $0 = substr($0, 1, 10) (substr($0, 11, 1) == "A" ? "B" : "A") substr($0, 12) } 1' \
  csr/rsa2048-sha256.pem > csr/bad-signature.pem

# --- cert_identity: certificates like 1.2's (v1, SHA-1) and ours, PEM and DER ---------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -sha256 -days 30 \
  -subj '/CN=CA/emailAddress=info@conpaas.eu/O=ConPaaS' -out "$work/ca.pem" 2>/dev/null
issue() { # name subject digest [extfile]
  openssl req -new -key "$work/rsa.key" -subj "$2" -out "$work/$1.csr"
  openssl x509 -req -in "$work/$1.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -"$3" \
    -set_serial 0x$(openssl rand -hex 16) -days 30 ${4:+-extfile "$4"} \
    -out "cert_identity/$1.pem" 2>/dev/null
}
issue user-v1-sha1 '/serviceLocator=0/CN=alice/UID=7/O=Contrail/emailAddress=alice@example.org/role=user' sha1
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' \
  > "$work/v3.ext"
issue manager-v3-sha256 '/serviceLocator=101/CN=ConPaaS/UID=3/O=Contrail/emailAddress=info@conpaas.eu/role=manager' sha256 "$work/v3.ext"
issue frontend-v3 '/role=frontend/emailAddress=info@conpaas.eu/CN=director.example.org/O=ConPaaS' sha256 "$work/v3.ext"
issue repeated-uid '/UID=07/UID=8/serviceLocator=x/role=agent/CN=ConPaaS' sha256
openssl x509 -in cert_identity/manager-v3-sha256.pem -outform DER \
  -out cert_identity/manager-v3-sha256.der
cp "$work/ca.pem" cert_identity/ca-v3.pem

# --- params: query \0 content type \0 body, as the three kinds of clients send them ----------
printf 'username=alice&password=s3cret\0application/x-www-form-urlencoded\0username=alice&password=s3cret' \
  > params/python-client-urlencoded
printf 'username=q&a=%%20b+c&a=2&empty=\0application/x-www-form-urlencoded; charset=utf-8\0username=b&name=New+%%C3%%A9&x=%%zz' \
  > params/query-wins-and-escapes
printf 'name=%%ff\0\0' > params/not-utf8-refused
b='----------_BoUnDaRy_StRiNg_$'
{
  printf '\0multipart/form-data; boundary=%s\0' "$b"
  printf -- '--%s\r\nContent-Disposition: form-data; name="sid"\r\n\r\n101\r\n' "$b"
  printf -- '--%s\r\nContent-Disposition: form-data; name="csr"; filename="csr.pem"\r\n' "$b"
  printf 'Content-Type: application/octet-stream\r\n\r\n'
  cat csr/agent-rsa2048-sha1.pem
  printf '\r\n--%s--\r\n' "$b"
} > params/manager-multipart-csr
{
  printf '\0multipart/form-data; boundary="------------------------d74496d66958873e"\0'
  for field in 'manifest={"Application": "web", "Services": [{"Type": "php"}]}' 'thread=1'; do
    printf -- '--------------------------d74496d66958873e\r\n'
    printf 'Content-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' "${field%%=*}" "${field#*=}"
  done
  printf -- '--------------------------d74496d66958873e--\r\n'
} > params/php-frontend-multipart
printf '\0application/json\0{"username": "u", "password": "p"}' > params/json-body-ignored
printf 'decrement=1\0multipart/form-data\0--x\r\n\r\n' > params/multipart-without-boundary
printf '\0multipart/form-data; boundary=x\0--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nunterminated' \
  > params/multipart-truncated

# --- vpn_plan: base(4) prefix bits flags flip, then 5-byte records (kind, number) ------------
# 1.2's test: 172.16.0.0/12, 6 bits, documented arithmetic, base aligned; nothing recorded.
printf '\xac\x10\x00\x00\x0c\x06\x02\x00' > vpn_plan/empty-172.16-12-bits-6
# 172.16.0.0/12 with 5 bits, the first 31 candidates recorded (kind 3, run of 31).
printf '\xac\x10\x00\x00\x0c\x05\x02\x00\x03\x00\x00\x00\x1f' > vpn_plan/nearly-full
# Same plan, all 32 recorded: exhausted.
printf '\xac\x10\x00\x00\x0c\x05\x02\x00\x03\x00\x00\x00\x20' > vpn_plan/exhausted
# 1.2's legacy arithmetic (prefix = 32 - P - B: /14s, as its unit test), a wide recorded /13
# over the first two candidates and candidate 5 mod 4.
printf '\xac\x10\x00\x00\x0c\x06\x03\x00\x35\xac\x10\x00\x00\x02\x00\x00\x00\x05' \
  > vpn_plan/legacy-wide-recorded
# 10.0.0.0/8 with 20 bits (a million /28s): 10.0.0.0/28 and 10.0.18.0/24 recorded inside,
# 192.168.0.0/16 outside.
printf '\x0a\x00\x00\x00\x08\x14\x02\x00\x71\x00\x00\x00\x00\x61\x00\x00\x12\x34\x40\xc0\xa8\x00\x00' \
  > vpn_plan/huge-plan
# Refused settings: host bits in the base, a broken netmask, too many bits.
printf '\xac\x10\x00\x01\x0c\x05\x00\x00' > vpn_plan/misaligned-base
printf '\xac\x10\x00\x00\x0c\x05\x06\x1c' > vpn_plan/non-contiguous-netmask
printf '\xac\x10\x00\x00\x0c\x1e\x02\x00' > vpn_plan/too-many-bits

ls -R .
