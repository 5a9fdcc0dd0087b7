"""aiosmtpd test servers on a port the kernel picks."""

from aiosmtpd.controller import Controller


class SinkController(Controller):
    def _trigger_server(self):
        # Port 0 lets the kernel choose a free port: read it back before the readiness probe connects to it.
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()
