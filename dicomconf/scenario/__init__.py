"""dicomconf.scenario."""
