import torch

# Tests run small tensors, where one thread is fastest and results do not depend on the
# machine's core count.
torch.set_num_threads(1)
