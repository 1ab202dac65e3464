"""continual-side: side-tuning benchmarks for continual learning and embodied navigation."""

import warnings

# Avalanche imports qpsolvers for GEM-style strategies, which this suite does not use; its warning at
# import time would otherwise precede every command's output, including the one-line user errors.
warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)

__version__ = "0.1.0"
