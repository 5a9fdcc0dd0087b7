#!/usr/bin/env bash
# Unpack Debian's Exim into .cache/exim for the export tests, without installing it:
# the exim4 packages conflict with postfix, which the Postfix tests need installed.
# Exim is only run as `exim -bV/-bh/-bt` on test configurations; no daemon is started.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.cache/exim
[ -x "$DEST/bin/exim4" ] && exit 0

rm -rf "$DEST" && mkdir -p "$DEST/debs" "$DEST/root" "$DEST/bin"
(cd "$DEST/debs" && apt-get download -qq exim4-daemon-light libidn12 libnss-wrapper)
for deb in "$DEST"/debs/*.deb; do dpkg-deb -x "$deb" "$DEST/root"; done

# Exim looks up its Debian-exim user; nss_wrapper supplies it without touching /etc/passwd.
cp /etc/passwd "$DEST/passwd" && echo 'Debian-exim:x:65534:65534:Exim:/tmp:/usr/sbin/nologin' >>"$DEST/passwd"
cp /etc/group "$DEST/group" && echo 'Debian-exim:x:65534:' >>"$DEST/group"
ROOT=$(cd "$DEST" && pwd)
LIB=$(dirname "$(find "$ROOT/root" -name 'libnss_wrapper.so*' | head -n 1)")
cat >"$DEST/bin/exim4" <<WRAPPER
#!/bin/sh
LD_LIBRARY_PATH=$LIB LD_PRELOAD=$(find "$ROOT/root" -name 'libnss_wrapper.so*' | head -n 1) \\
NSS_WRAPPER_PASSWD=$ROOT/passwd NSS_WRAPPER_GROUP=$ROOT/group exec $ROOT/root/usr/sbin/exim4 "\$@"
WRAPPER
chmod +x "$DEST/bin/exim4"
"$DEST/bin/exim4" -C /dev/null -bV >/dev/null 2>&1
