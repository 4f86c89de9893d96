"""streampii: find personal data in video, log it with timestamps, and blur it."""

__version__ = "0.1.0"
