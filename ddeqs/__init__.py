"""DDEQs: Distributional Deep Equilibrium Models through Wasserstein gradient flows.

A library and a reproducible pipeline for Geuter et al., AISTATS 2025.
"""

__version__ = "0.1.0"
