"""Serial bridge (``edgensd.firmware_bridge`` once installed): the framed protocol, the device-side C
framer, the host reader and a device simulator. Populated by the bridge issue."""
