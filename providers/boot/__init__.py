"""What glidepath applied on a host, kept across its reboots (issue 19).

`restore.py` is the boot step itself (installed on each host, standalone); `persist.py`
holds the pure plans the providers use to write and remove the records it reads, to
install it, and (on systemd hosts) its units.
"""
