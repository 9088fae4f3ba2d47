#!/bin/sh
# Creates a private Postfix instance for the bench: config, queue and data
# directories under DIR, listening on 127.0.0.1:PORT only, queueing each message
# with Postfix's usual fsync and discarding it at delivery. Nothing under
# /etc/postfix is touched, no chroot. Start it in the foreground with
#   /usr/lib/postfix/sbin/master -c DIR/etc -d -e SECONDS
# (bench/run.ts does, and stops it by its pid).
# Usage: bench/postfix/setup.sh DIR PORT
set -eu
DIR=${1:?usage: setup.sh DIR PORT}
PORT=${2:?usage: setup.sh DIR PORT}
command -v postconf >/dev/null || {
  echo "postfix is not installed: echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections; DEBIAN_FRONTEND=noninteractive apt-get install -y postfix" >&2
  exit 3
}
DAEMONS=$(postconf -dh daemon_directory)
mkdir -p "$DIR/etc" "$DIR/spool" "$DIR/data"
DIR=$(cd "$DIR" && pwd)
chown root "$DIR" "$DIR/etc" "$DIR/spool"
chmod 755 "$DIR" "$DIR/etc" "$DIR/spool" # postfix daemons must reach spool/ and data/
chown postfix "$DIR/data"

cat > "$DIR/etc/main.cf" <<CF
compatibility_level = 3.6
config_directory = $DIR/etc
queue_directory = $DIR/spool
data_directory = $DIR/data
daemon_directory = $DAEMONS
meta_directory = $(postconf -dh meta_directory)
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.invalid
mydomain = bench.invalid
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination = localhost, \$myhostname
local_recipient_maps =
alias_maps =
alias_database =
# every message is queued (fsync'ed by cleanup, Postfix's default) and then discarded
local_transport = discard:bench
default_transport = discard:bench
relay_transport = discard:bench
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions =
smtpd_peername_lookup = no
smtpd_banner = \$myhostname ESMTP
# the bench sends 10 MiB messages and up to 256 concurrent sessions
message_size_limit = 20000000
default_process_limit = 300
biff = no
CF

# A minimal master.cf: the SMTP listener on 127.0.0.1:PORT and the internal
# services queueing needs; chroot off everywhere.
cat > "$DIR/etc/master.cf" <<CF
127.0.0.1:$PORT inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
CF

postfix -c "$DIR/etc" check >&2
echo "$DIR/etc"
