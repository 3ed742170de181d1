"""boxbench: benchmark ways of tuning a language model, grouped by the access they need.

The repository root is the ``boxbench`` package: ``boxbench.methods``, ``boxbench.backends``,
``boxbench.benchmarks`` and ``boxbench.reports`` live in the top-level folders of the same names.
"""

__version__ = "0.1.0"
