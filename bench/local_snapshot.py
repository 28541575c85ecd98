#!/usr/bin/env python3
"""What a ``--data`` full snapshot costs with the items on disk (not a test).

    .venv/bin/python bench/local_snapshot.py --items 50000

Fills a table like the app's (``PK``/``SK``, a GSI, about 1 KB an item) in moto with ``infra/moto_tuning.py``
applied, then times a full snapshot (``infra/local_state.py``: the store copied in SQL while moto is paused,
then written one item a line) and the earlier way (every item's JSON in one document, built in memory), and
loading the snapshot into a fresh moto; for each, the wall time, how long moto was paused, and the process's
peak resident memory above what it held before (sampled every 5 ms).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measured(label: str, work: Callable[[], Any]) -> Any:
    """Run ``work``, print its wall time and peak resident memory above the start."""
    import gc

    gc.collect()
    start_rss, peak, done = rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    peak[0] = max(peak[0], rss_mb())
    print(f"{label:<44} {elapsed:6.2f} s   peak +{peak[0] - start_rss:7.1f} MB (resident {start_rss:.0f} MB before)")
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=50000)
    args = parser.parse_args(argv)

    import boto3
    from moto import mock_aws

    from infra import local_state, moto_tuning

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        moto_tuning.apply()
        ddb = boto3.client("dynamodb", region_name="eu-central-1")
        ddb.create_table(
            TableName="snapshot-bench", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "GSI1PK", "GSI1SK")],
            GlobalSecondaryIndexes=[{"IndexName": "GSI1", "KeySchema": [{"AttributeName": "GSI1PK", "KeyType": "HASH"},
                                                                        {"AttributeName": "GSI1SK", "KeyType": "RANGE"}],
                                     "Projection": {"ProjectionType": "ALL"}}])
        filler = "x" * 600
        for start in range(0, args.items, 25):
            ddb.batch_write_item(RequestItems={"snapshot-bench": [{"PutRequest": {"Item": {
                "PK": {"S": f"MEMBER#{i % 2000:05d}"}, "SK": {"S": f"LEDGER#{i:08d}"}, "GSI1PK": {"S": f"P#{i % 7}"},
                "GSI1SK": {"S": f"{i:08d}"}, "points": {"N": str(i)}, "note": {"S": filler},
                "meta": {"M": {"kind": {"S": "order"}, "tags": {"L": [{"S": "a"}, {"S": "b"}]}}}}}}
                for i in range(start, min(start + 25, args.items))]})
        print(f"{args.items} items, {rss_mb():.0f} MB resident")
        state = local_state.LocalState(Path(tmp) / "data", log=lambda _m: None)
        paused: list[float] = []
        original = moto_tuning.engine_paused

        def timed_pause() -> Any:
            from contextlib import contextmanager

            @contextmanager
            def pause() -> Any:
                started = time.perf_counter()
                with original():
                    yield
                paused.append(time.perf_counter() - started)
            return pause()

        moto_tuning.engine_paused = timed_pause  # type: ignore[assignment]
        measured("full snapshot (items on disk, a line each)", lambda: state.save("bench", full=True))
        print(f"{'':<44} moto paused {paused[-1]:.2f} s, file {os.path.getsize(Path(tmp) / 'data' / local_state.AWS_FILE) / 1e6:.1f} MB")

        def one_document() -> None:
            with moto_tuning.ENGINE_LOCK:
                started = time.perf_counter()
                tables = local_state.dump_dynamodb()
                paused.append(time.perf_counter() - started)
            blob = gzip.compress(json.dumps({"format": 1, "dynamodb": tables, "kms": []}, separators=(",", ":"),
                                            default=local_state._binary_as_base64).encode(), compresslevel=1)
            (Path(tmp) / "old.json.gz").write_bytes(blob)

        measured("the earlier way (one JSON document)", one_document)
        print(f"{'':<44} moto paused {paused[-1]:.2f} s")
        moto_tuning.engine_paused = original  # type: ignore[assignment]
        from moto.dynamodb.models import dynamodb_backends

        dynamodb_backends["123456789012"]["eu-central-1"].reset()
        _head, count = measured("load the snapshot into a fresh moto",
                                lambda: local_state._load_full(Path(tmp) / "data" / local_state.AWS_FILE))
        assert count == args.items, count
        dynamodb_backends["123456789012"]["eu-central-1"].reset()
        measured("load the earlier format", lambda: local_state._load_full(Path(tmp) / "old.json.gz"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
