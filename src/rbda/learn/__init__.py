"""Stamps to runs: the training loop, the methods, the models, evaluation and the run record."""
