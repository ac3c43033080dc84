"""The gauges decompose (mpo.py) offers, apart so that the config validates `gauge` without torch."""

GAUGES = ("opf", "central")
