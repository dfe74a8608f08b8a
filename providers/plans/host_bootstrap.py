"""The one-shot set-up of a hypervisor: what glidepath needs installed and allowed there.

Run once per host by `pulumi_command.remote.Command` (components/host.py), before any of
glidepath's own resources touch the host:
- the Debian packages a hypervisor needs (installed only where missing; on a host without
  dpkg the commands are checked instead, and a missing one fails with its name);
- `PermitTunnel yes` for the host's sshd (the tunnel keepers' `ssh -w`), set where the
  effective config says otherwise: a drop-in where the config includes
  /etc/ssh/sshd_config.d, else a first line in the config (sshd keeps a keyword's first
  value); then sshd re-reads its config (SIGHUP, by the PID in its PidFile);
- the directories glidepath writes to.

The script is a constant; the host's values reach it as positional arguments, and the
whole argv is quoted by `transport.quote_argv`, the one quoting point.
"""

from __future__ import annotations

from providers import validate
from providers.schema.host import DEFAULT_SSHD_CONFIG
from providers.transport import quote_argv

#: What a hypervisor needs, by Debian package name.
PACKAGES = (
    "qemu-system-x86",
    "qemu-utils",
    "libvirt-daemon-system",
    "libvirt-clients",
    "iproute2",
    "iptables",
    "tcpdump",
    "openssh-server",
    "openssh-client",
    # glidepath's boot step (providers/boot/restore.py) is a Python 3 script.
    "python3",
)
#: Without dpkg: the commands those packages provide.
COMMANDS = ("qemu-system-x86_64", "virsh", "ip", "iptables", "tcpdump", "sshd", "ssh", "python3")
DIRECTORIES = ("/etc/libvirt/scripts", "/var/log/glidepath")
DROP_IN = "/etc/ssh/sshd_config.d/00-glidepath-tunnel.conf"

SCRIPT = r"""set -eu
sshd_config=$1 drop_in=$2 directories=$3 commands=$4
shift 4
if command -v dpkg-query >/dev/null 2>&1; then
  missing=
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
      || missing="$missing $package"
  done
  if [ -n "$missing" ]; then
    echo "packages: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086 (one word per package name)
    apt-get install -y -q --no-install-recommends $missing >/dev/null
  fi
  echo "packages: ok"
else
  for command in $commands; do
    command -v "$command" >/dev/null 2>&1 || { echo "missing command: $command" >&2; exit 1; }
  done
  echo "commands: ok (no dpkg on this host)"
fi
setting() {
  sshd -T -C user=root,host=glidepath,addr=127.0.0.1 -f "$sshd_config" |
    awk -v k="$1" '$1 == k {print $2}'
}
if [ "$(setting permittunnel)" = yes ]; then
  echo "sshd: PermitTunnel yes"
else
  if grep -qiE '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/' "$sshd_config"; then
    printf 'PermitTunnel yes\n' >"$drop_in"
  else
    sed -i '1i PermitTunnel yes' "$sshd_config"
  fi
  if [ "$(setting permittunnel)" != yes ]; then
    echo "sshd: PermitTunnel is still not yes in $sshd_config" >&2
    exit 1
  fi
  pidfile=$(setting pidfile)
  if [ -s "$pidfile" ]; then kill -HUP "$(cat "$pidfile")"; fi
  echo "sshd: PermitTunnel yes (set, sshd reloaded)"
fi
install -d -m 0755 $directories
echo "directories: ok"
"""


def command(sshd_config: str = DEFAULT_SSHD_CONFIG) -> str:
    """The remote command line for one host (`sshd_config`: where its sshd reads from)."""
    path = validate.absolute_path(sshd_config)
    return quote_argv(
        [
            "sh",
            "-c",
            SCRIPT,
            "glidepath-host-bootstrap",  # $0
            path,
            DROP_IN,
            " ".join(DIRECTORIES),
            " ".join(COMMANDS),
            *PACKAGES,
        ]
    )
