"""Loss functions of the tfad models."""
