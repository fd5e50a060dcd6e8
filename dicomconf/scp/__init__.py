"""dicomconf.scp."""
