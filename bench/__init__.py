"""SkillCore benchmarks: ``make bench`` (``python -m bench``) runs every module here.

Each benchmark is a module ``bench/<name>.py`` with a ``main(argv)``; ``python -m bench``
runs each in its own process (each configures Django and picks its own database), and
``python -m bench <name> ...`` runs only those. docs/benchmarks.md has the figures.
"""
