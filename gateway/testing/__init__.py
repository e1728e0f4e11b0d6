"""gateway.testing: a local Discord gateway emulator (see :class:`GatewayEmulator`)."""

__all__: list[str] = []
