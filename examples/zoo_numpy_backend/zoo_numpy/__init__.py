"""zoo-numpy: a worked example of a zoo backend plugin (inference on zoo's NumPy reference BERT)."""
