"""dicomconf.wire."""
