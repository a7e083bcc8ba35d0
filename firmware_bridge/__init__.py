"""Serial bridge (``edgensd.firmware_bridge`` once installed): the framed protocol (``PROTOCOL.md``), its pure
encoder / parser (:mod:`.protocol`), the host reader on pyserial (:mod:`.reader`), a device simulator with
fault injection (:mod:`.simulator`) and the device-side C framer and parser (``c/``). Torch-free."""
