"""tfad: visual anomaly detection for pharmaceutical inspection lines."""

__version__ = "0.1.0"
