# postfix-common.sh: sourced by the benches that run a private Postfix
# instance next to ours. pf_main_cf DIR SYSLOG_NAME prints the main.cf
# settings they share: everything below DIR, loopback only, no local
# delivery, no aliases; each bench appends its own lines.
pf_main_cf() {
	cat <<PFEOF
compatibility_level = 3.6
queue_directory = $1/queue
data_directory = $1/data
syslog_name = $2
maillog_file = $1/maillog
maillog_file_prefixes = $1
myhostname = bench.example
mydomain = example
myorigin = \$myhostname
mydestination =
relay_domains =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
biff = no
PFEOF
}
