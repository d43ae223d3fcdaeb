"""Dataset readers: one module per published file format, plus the no-code user format.

``formats`` detects which layout a ``--data-root`` holds and ``published`` names the datasets;
``radfm`` reads RadFM's repackaged files, ``user`` a folder with a ``radbench.yaml``.
"""
