#!/bin/sh
# configured-state.sh: one digest of what `lgcloud configure` makes of this VM, as it is now.
#
# Every file, directory and link under the trees the roles write (path, mode, owner; for a file
# also its change time and size: a write, a chmod or a chown moves it), the state and process of
# every runit service, and the files that say how PostgreSQL last started and whether it is a
# standby. The controller compares it with the digest it took after the VM's last successful run;
# any difference makes configure run the VM's roles again. Prints the digest only.
set -eu
{
	# Left out: what the lab changes while it runs (the gateway's service addresses, runit's own
	# bookkeeping, Python's byte-code caches, Ansible's temporary files). A directory is listed without
	# its change time: what enters or leaves it is listed itself.
	find /etc /opt /usr/local /root -xdev \
		\( -path '/etc/lgcloud/service-addresses*' -o -name supervise -o -name __pycache__ \
		-o -path /root/.ansible -o -path /root/.cache \) -prune \
		-o -type d -printf '%p %m %u %g\n' -o -printf '%p %m %u %g %C@ %s %l\n'
	for service in /etc/service/*/; do
		[ -d "${service}supervise" ] || continue
		printf '%s %s %s\n' "$service" "$(cat "${service}supervise/stat" 2>/dev/null)" \
			"$(cat "${service}supervise/pid" 2>/dev/null)"
	done
	for data in /var/lib/postgresql/*/main; do
		[ -d "$data" ] || continue
		find "$data" -maxdepth 1 \( -name postmaster.pid -o -name postgresql.auto.conf -o -name standby.signal \) \
			-printf '%p %C@ %s\n'
	done
} | sha256sum | cut -d' ' -f1
