"""rbda: cross-survey domain adaptation for real/bogus classification of alert stamps."""

__version__ = "0.1.0"
