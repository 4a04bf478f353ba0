"""rbda: cross-survey domain adaptation for real/bogus classification of alert stamps."""

__version__ = "0.1.0"

SURVEYS = ("hits", "des", "ztf", "atlas")
STAMP_SIZE = 21
CHANNELS = ("template", "science", "difference")
