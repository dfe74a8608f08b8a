"""glidepath's Pulumi program: load the stack config, wire the components, export.

The host-network components (issue 4) and VM placement (issue 5) are wired here as they
land; until then the program declares each configured host's forwarding sysctls.
"""

import pulumi

from components.config import load_config
from components.host import HypervisorHost

config = load_config()
hosts = {name: HypervisorHost(name, host) for name, host in config.hosts.items()}
pulumi.export("hosts", {name: host.address for name, host in config.hosts.items()})
