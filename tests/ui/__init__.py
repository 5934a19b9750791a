"""GUI tests: every test under this folder is marked ``gui`` (tests/ui/conftest.py)."""
