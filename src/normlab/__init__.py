"""normlab: reproduce, measure and explain the normalization papers."""

__version__ = "0.1.0"
