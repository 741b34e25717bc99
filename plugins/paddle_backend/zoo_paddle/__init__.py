"""zoo's PaddlePaddle backend.

``zoo_paddle.plugin`` holds the hook implementations (no paddle import), ``env`` the
settings made before paddle loads, ``names`` the canonical <-> PaddleNLP name map,
``model`` the BERT ``nn.Layer``, ``train`` and ``distill`` the trainers, ``export`` the
inference formats and ``backend`` the :class:`PaddleBackend` that ties them together.
Importing this package does not import paddle.
"""

__version__ = "0.1.0"
