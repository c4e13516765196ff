#!/bin/sh
# seaweedfs-security.sh DIR: a fresh DIR/security.toml for `weed -config_dir=DIR mini -disableHttp`,
# so SeaweedFS hands out data only through its S3 API and the S3 keys. One definition for all
# that run SeaweedFS: the local stack (scripts/manage/local.sh), the MinIO stand-in image
# (seaweedfs-entrypoint.sh here) and the tests (tests/services.py). Made again on every start:
# nothing in it needs to outlive the process.
#
#  - JWT keys: the volume server takes reads and writes only with a token from the master
#    ([jwt.signing], [jwt.signing.read]), the filer's HTTP API only with one from the S3
#    gateway ([jwt.filer_signing], [jwt.filer_signing.read]). -disableHttp turns the filer's
#    HTTP API and the master's (/dir/assign, /submit, /col/delete...) off altogether: the
#    master hands out write tokens and deletes collections to anyone, JWT or not.
#  - gRPC (each port + 10000, and the /tmp/seaweedfs-*-grpc-PORT.sock sockets) is mutual TLS:
#    one certificate for every component, signed by a CA whose key is deleted at once, so
#    nothing without DIR/node.key can talk to the filer, master or volume server over gRPC.
# DIR ends up mode 700 with the keys inside (mode 600). Needs openssl.
set -eu

dir="${1:?usage: seaweedfs-security.sh DIR}"
command -v openssl >/dev/null 2>&1 || {
	echo "seaweedfs-security.sh: openssl is needed (apt-get install openssl)" >&2
	exit 1
}
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
case "$PWD" in *\"* | *\\*)
	echo "seaweedfs-security.sh: $PWD: a path without quotes or backslashes, please (it goes into TOML)" >&2
	exit 1
	;;
esac
rm -f ca.key node.csr node.ext

# openssl quietly, unless it fails.
quiet() {
	out="$("$@" 2>&1)" || {
		printf 'seaweedfs-security.sh: %s\n' "$out" >&2
		return 1
	}
}
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
# shellcheck disable=SC2086 # $ec is several options
quiet openssl req -x509 $ec -days 3650 -subj "/CN=SeaweedFS gRPC CA" -keyout ca.key -out ca.crt
# shellcheck disable=SC2086
quiet openssl req $ec -subj "/CN=seaweedfs" -keyout node.key -out node.csr
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >node.ext
quiet openssl x509 -req -in node.csr -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
	-days 3650 -extfile node.ext -out node.crt
rm -f ca.key node.csr node.ext

{
	for section in jwt.signing jwt.signing.read jwt.filer_signing jwt.filer_signing.read; do
		printf '[%s]\nkey = "%s"\n\n' "$section" "$(openssl rand -hex 32)"
	done
	printf '[grpc]\nca = "%s/ca.crt"\n\n' "$PWD"
	for component in master volume filer s3 admin worker msg_broker msg_agent mq client; do
		printf '[grpc.%s]\ncert = "%s/node.crt"\nkey = "%s/node.key"\n\n' "$component" "$PWD" "$PWD"
	done
} >security.toml.new
mv security.toml.new security.toml
