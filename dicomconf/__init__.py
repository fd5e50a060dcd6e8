"""dicomconf: a DICOM network protocol conformance test harness and fake SCU/SCP toolkit."""

__version__ = "0.1.0"
