"""Model adapters (installed as ``radbench.models``); each family in its own file, loaded lazily."""
