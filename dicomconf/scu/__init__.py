"""dicomconf.scu."""
