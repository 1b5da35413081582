import os

import torch

# Tests run small tensors: one thread is faster and immune to a loaded shared machine
# (the CLI does the same for the synthetic track).
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)
