"""zoo's PyTorch backend.

``zoo_torch.plugin`` holds the hook implementations (no torch import), ``model`` the
BERT ``nn.Module``, ``train`` the trainer and ``backend`` the :class:`TorchBackend`
that ties them together.  Importing this package does not import torch.
"""

__version__ = "0.1.0"
