"""The host facts moved to ``common.py``; this name stays for scripts that import it."""

from common import cpu_model, load_average, usable_cores

__all__ = ["cpu_model", "load_average", "usable_cores"]
