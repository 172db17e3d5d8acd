"""Plots: similarity profiles, convergence curves, filter grids (import the submodule you need)."""
