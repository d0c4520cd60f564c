"""`labelloop bench`: the whole loop measured on labeled data (see loop.py, throughput.py)."""

#: How long a simulated person takes per task unless told otherwise. Real annotators take seconds
#: per item while a model trains in seconds; with instant answers the stream would run past each
#: training and compare the loop with a reference whose models are retrained between chunks for
#: free. 250 ms keeps labeling slower than training, as with people, at 4 answers/s per annotator.
DEFAULT_ANNOTATOR_LATENCY_MS = 250.0
