"""Labelloop: label a live data stream with a model, route what it is unsure of to people, retrain."""

__version__ = "0.1.0"
