"""hybridwbc: hybrid CNN + classical classifiers for white blood cell images."""

__version__ = "0.1.0"
