"""Host side of the tinygen serial protocol (specification: docs/protocol.md),
in three layers, each importing only the one below:

    framing    constants, struct layouts, COBS, CRC-32 frames, the frame reader
    messages   decoded payloads: BOOT, INFO (DeviceInfo, TensorInfo), results
    client     DeviceClient: handshake, upload, INVOKE, retries, resynchronisation

This module is their public face: ``from tinygen.device.protocol import DeviceClient``.
"""

from .client import *  # noqa: F403
from .framing import *  # noqa: F403
from .messages import *  # noqa: F403
