"""continual-side: side-tuning benchmarks for continual learning and embodied navigation."""

__version__ = "0.1.0"
