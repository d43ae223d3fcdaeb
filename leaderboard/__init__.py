"""Results and leaderboard schemas and builders (installed as ``radbench.leaderboard``)."""
