"""Tasks, dataset readers and prompts (installed as ``radbench.tasks``)."""
