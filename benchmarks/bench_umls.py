"""UMLS concept extraction speed: index build time and reports per second, against the issue's targets.

(1) building the default backend's index from ``hp.obo`` in a fresh cache (parse, filter, write the
    RRF rows) plus compiling the phrase matcher, as a fraction of the 10 s budget (<= 1 is met);
(2) extraction throughput on 2 worker processes (negation and uncertainty included, no disk
    cache), as a multiple of 200 reports/s (>= 1 is met); the serial figure is printed beside it;
(3) where the optional quickumls package imports (Python 3.11), the old QuickUMLS path's serial
    throughput on the same reports, as its time over the new matcher's (how much faster the
    default became).

Reports are 8 sentences each, drawn with a fixed seed from the development set
(tests/data/umls_dev.jsonl). Usage: ``python benchmarks/bench_umls.py [--reports N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, report  # noqa: E402


def reports(n: int, seed: int = 7) -> list[str]:
    rows = [json.loads(line)["text"] for line in (ROOT / "tests" / "data" / "umls_dev.jsonl").read_text().splitlines()]
    rng = random.Random(seed)
    return [" ".join(rng.sample(rows, 8)) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    args = parser.parse_args()
    os.environ["RADBENCH_CACHE"] = tempfile.mkdtemp(prefix="bench-umls-")
    print(machine(), file=sys.stderr)

    from radbench.metrics import parallel
    from radbench.metrics.umls import Umls, extractors, hpo

    t0 = time.perf_counter()
    spec = Umls(cache=False).spec()  # builds the index in the fresh cache
    extractors.build_extractor(spec)
    build = time.perf_counter() - t0
    report("(1) UMLS index build / 10 s", build / 10, "<= 1", build <= 10,
           f"hp.obo -> {json.loads((hpo.ensure_hpo_index() / hpo.STAMP_FILE).read_text())['n_strings']} HPO "
           f"strings + lexicon, matcher compiled, in {build:.2f}s")

    texts = reports(args.reports)
    t0 = time.perf_counter()
    serial = extractors.extract_chunk(texts, spec)
    t_serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    two = parallel.chunked_map(extractors.extract_chunk, texts, min_items=1, workers=2, spec=spec)
    t_two = time.perf_counter() - t0
    assert two == serial
    rate = len(texts) / t_two
    report("(2) UMLS extraction reports/s on 2 workers / 200", rate / 200, ">= 1", rate >= 200,
           f"{len(texts)} reports of 8 sentences: 2 workers {rate:.0f}/s (incl. worker start), "
           f"serial {len(texts) / t_serial:.0f}/s")

    try:
        import quickumls  # noqa: F401
    except ImportError:
        print("(3) skipped: quickumls does not import here", file=sys.stderr)
        return
    qspec = extractors.BackendSpec("quickumls", index=str(hpo.build_quickumls_db(hpo.ensure_hpo_index())),
                                   semtypes="all")
    old = extractors.QuickUmlsExtractor(qspec)
    t0 = time.perf_counter()
    for text in texts:
        extractors.mentions(old, text)
    t_old = time.perf_counter() - t0
    report("(3) QuickUMLS serial time / phrase matcher serial time", t_old / t_serial, ">= 1", t_old >= t_serial,
           f"{len(texts)} reports: QuickUMLS {len(texts) / t_old:.0f}/s, phrase matcher {len(texts) / t_serial:.0f}/s")


if __name__ == "__main__":
    main()
