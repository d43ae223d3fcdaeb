"""radbench: the evaluation harness for radiology foundation models.

The package is laid out in the order the data flows: ``radbench.tasks`` (datasets, prompts) ->
``radbench.models`` (adapters) -> ``radbench.store`` (predictions) -> ``radbench.metrics`` ->
``radbench.results`` -> ``radbench.leaderboard``. Importing this package is cheap on purpose:
``radbench --help`` and ``radbench list`` must never pull in torch or transformers.
"""

__version__ = "0.1.0"
