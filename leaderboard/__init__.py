"""Leaderboard builder and HTML page (installed as ``radbench.leaderboard``); the file schemas live in ``radbench.schemas``."""
