"""``dicomconf load``: load-testing a DICOM SCP with Locust users that speak through our SCU.

:mod:`~dicomconf.load.config` reads and checks the load file,
:mod:`~dicomconf.load.operations` runs one DICOM step at a time (PS3.8 7,
PS3.7 9), :mod:`~dicomconf.load.locustfile` is the Locust user and
:mod:`~dicomconf.load.cli` the sub-command.  Only the locustfile and the
sub-command's last step import Locust (an optional dependency: the ``load``
extra).
"""
