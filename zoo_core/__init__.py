"""zoo: one recipe file, any framework — fine-tune, distil and shrink BERT-family models."""

from zoo_core.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
