"""Hydra configs shipped with the package (a package, so Hydra finds them as pkg://hybridwbc.conf)."""
