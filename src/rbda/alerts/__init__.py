"""Alert packets to scores: the packet readers and `rbda predict`."""
