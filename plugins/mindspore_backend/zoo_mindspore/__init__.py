"""zoo's MindSpore backend.

``zoo_mindspore.plugin`` holds the hook implementations (no mindspore import), ``env``
the settings made before mindspore loads (its log level), ``model``
the BERT ``nn.Cell`` and the canonical name map, ``train`` the trainer, ``distill`` the
TinyBERT trainer, ``width`` DynaBERT importance and the width trainer, ``export``
MindIR/ONNX export, ``parallel`` data parallelism (cluster, gradient reducer),
``msrun`` the ``zoo run --nproc`` launcher and ``backend`` the
:class:`~zoo_mindspore.backend.MindSporeBackend` that ties them together.  Importing
this package does not import mindspore.
"""

__version__ = "0.1.0"
