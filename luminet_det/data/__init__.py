"""Datasets built locally from real images that ship in registry packages (demo, tests)."""
