"""lgcloud: a virtualized infrastructure lab for a municipal joint-use cloud (自治体クラウド)."""

__all__ = ["__version__"]
__version__ = "0.1.0"
