"""DIMSE services beyond verification and storage: plain handlers, no sockets (PS3.4, PS3.7)."""
