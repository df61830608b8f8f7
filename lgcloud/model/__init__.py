"""The model: what a stack declares (schema, validation), what follows from it (topology), and the
lab's conventions (naming, check digits). Imports nothing else of lgcloud but ``errors`` and ``paths``."""
