"""Hydra plugins shipped with regbench (found by Hydra through the `hydra_plugins` namespace)."""
