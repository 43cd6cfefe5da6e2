"""Stream mode: receive robot messages over an outbound WebSocket (no public IP needed).

`StreamClient` is the transport; `frames` is the wire format, free of I/O.
"""

from responder.stream.client import StreamClient
from responder.stream.frames import BOT_TOPIC

__all__ = ["BOT_TOPIC", "StreamClient"]
