"""A minimal Python language host, for machines where the real one cannot be had.

The Pulumi CLI runs a Python program through the `pulumi-language-python` plugin. The
module proxy reachable here does not serve that plugin's module (README, Engine notes),
so bootstrap installs this stand-in in `.tools/bin` when no real one is available. It
speaks the same gRPC protocol and runs the project's `__main__.py` with the Python SDK's
own in-process language server (the one the Automation API uses for inline programs):
same engine, same resource monitor, same dynamic-provider plugin. It implements what
`preview`, `up`, `refresh` and `destroy` call; it does not install dependencies (the
bootstrap owns the venv) or report program dependencies. On a machine with a normal
Pulumi install the real language host is used instead.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from pulumi.automation._server import LanguageServer
from pulumi.runtime.proto import language_pb2, language_pb2_grpc

# The engine's messages can be large (a stack's whole config, big states).
_MAX_MESSAGE = 400 * 1024 * 1024


class ProjectLanguageServer(LanguageServer):
    def __init__(self, engine_address: str) -> None:
        super().__init__(self._run_program)
        self.engine_address = engine_address
        self.program_dir = os.getcwd()

    def _run_program(self) -> None:
        entry = os.path.join(self.program_dir, "__main__.py")
        if self.program_dir not in sys.path:
            sys.path.insert(0, self.program_dir)
        runpy.run_path(entry, run_name="__main__")

    def Run(self, request: Any, context: Any) -> Any:
        self.program_dir = request.info.program_directory or request.pwd or os.getcwd()
        # The SDK's server reads the engine address from args[0] (inline mode puts it
        # there); a plugin gets it on its command line instead.
        forwarded = language_pb2.RunRequest()
        forwarded.CopyFrom(request)
        del forwarded.args[:]
        forwarded.args.append(self.engine_address)
        return super().Run(forwarded, context)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: pulumi-language-python [flags] ENGINE_ADDRESS", file=sys.stderr)
        return 2
    engine_address = argv[-1]  # the CLI puts the engine address last, after any flags
    server = grpc.server(
        ThreadPoolExecutor(max_workers=4),
        options=[
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
        ],
    )
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(
        ProjectLanguageServer(engine_address), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    # The CLI stops its plugins with a signal when it is done: that is a normal end.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop(grace=None))
    print(port, flush=True)  # the CLI reads the port from our first line of stdout
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
