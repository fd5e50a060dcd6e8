"""dicomconf.report."""
