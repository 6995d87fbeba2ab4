"""STG-MTL Studio engine: datasets and tasks, multi-task training that records data maps,
task clustering from data maps, and the evaluation of groupings (MTL / STL / STG-MTL).

Modules: ``data``, ``tasks``, ``models``, ``config``, ``training``, ``datamaps``, ``store``,
``clustering``, ``evaluation``, ``jobs``, ``worker``; command line: ``python -m stg_core``.
"""

__version__ = "0.1.0"
