import torch

# Tests run small tensors, where one thread is fastest and results do not depend on the
# machine's core count.
torch.set_num_threads(1)

from hypothesis import settings  # noqa: E402

# Property tests draw the same examples every run: CI never fails on a new random draw.
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.load_profile("deterministic")
