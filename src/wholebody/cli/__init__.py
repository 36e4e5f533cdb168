"""Command-line entry points (thin wrappers over library functions)."""

import os

# Idle OpenMP threads sleep instead of spinning (read when torch loads): with DataLoader workers or
# other processes on few cores, spinning threads slow PyTorch down many times over.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
