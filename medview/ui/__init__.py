"""Qt widgets. The only package allowed to import PySide6."""
