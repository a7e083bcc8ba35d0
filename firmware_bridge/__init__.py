"""Serial bridge (``edgensd.firmware_bridge`` once installed): the framed protocol (``PROTOCOL.md``), its pure
encoder / parser (:mod:`.protocol`), the host reader on pyserial (:mod:`.reader`), a device simulator with
fault injection (:mod:`.simulator`), playback of a participant file as a device (:mod:`.playback`, the
``edgensd device-sim`` command), a protocol-agnostic faulty wire (:mod:`.faulty_link`, ``edgensd
faulty-link``), a recorder of what a host received (:mod:`.record`) and the device-side C framer and parser
(``c/``). Torch-free."""
