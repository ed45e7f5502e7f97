"""What making an IAM auth token costs a cold start: botocore versus leadlookup.sigv4.

Each sample is a fresh ``python3.13 -X importtime`` process (what a new Lambda container
is) that imports a signer and makes one token: the RDS token (boto3's
``generate_db_auth_token``, botocore's SigV4QueryAuth alone, or the layer's signer) and the
ElastiCache token (botocore's SigV4QueryAuth, or the layer's signer). boto3 comes from a
separate folder, as on the Lambda runtime; one untimed warm-up run per variant writes the
bytecode, as the runtime's and the built layer's are precompiled.

Each variant runs alone and after a prelude of the standard-library modules the data path
imports anyway; import ms and sign ms are measured inside the process (perf_counter), modules
is what ``-X importtime`` counted for the whole process.

``python -m devkit.bench.tokens [--runs N]`` prints a table and writes docs/bench/tokens.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from devkit import toolchain
from devkit.check import find_python313

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "leadlookup"
OUTPUT = ROOT / "docs" / "bench" / "tokens.json"

CREDENTIALS = (
    "import os\n"
    "os.environ.update(AWS_ACCESS_KEY_ID='ASIABENCHEXAMPLE0001', AWS_SECRET_ACCESS_KEY='s/k+e=y',"
    " AWS_SESSION_TOKEN='IQoJb3JpZ2luX2VjE/session+token==', AWS_REGION='ca-central-1')\n"
)
HOST, PORT, USER, CACHE, CACHE_USER = "proxy.example", 5432, "bici_app", "bici-cache", "bici-app"

# Each child: time the import and the signing separately, print them as JSON.
VARIANTS: dict[str, tuple[str, str, str]] = {
    # The interpreter's own start (site, encodings...): the floor under every other row.
    "baseline: no signer": ("pass", "pass", ""),
    "rds: boto3 generate_db_auth_token": (
        "import boto3",
        "boto3.client('rds', region_name='ca-central-1')"
        f".generate_db_auth_token({HOST!r}, {PORT}, {USER!r})",
        "boto3",
    ),
    "rds: botocore SigV4QueryAuth": (
        "from botocore.auth import SigV4QueryAuth\n"
        "from botocore.awsrequest import AWSRequest\n"
        "from botocore.credentials import Credentials",
        f"r = AWSRequest(method='GET', url='https://{HOST}:{PORT}/?Action=connect&DBUser={USER}')\n"
        "SigV4QueryAuth(Credentials(os.environ['AWS_ACCESS_KEY_ID'],"
        " os.environ['AWS_SECRET_ACCESS_KEY'], os.environ['AWS_SESSION_TOKEN']),"
        " 'rds-db', 'ca-central-1', 900).add_auth(r)",
        "botocore",
    ),
    "rds: leadlookup.sigv4": (
        "from leadlookup import iam",
        f"iam.rds_token_source({HOST!r}, {PORT}, {USER!r}, os.environ)()",
        "leadlookup",
    ),
    "elasticache: botocore SigV4QueryAuth": (
        "from botocore.auth import SigV4QueryAuth\n"
        "from botocore.awsrequest import AWSRequest\n"
        "from botocore.credentials import Credentials",
        f"r = AWSRequest(method='GET', url='https://{CACHE}/?Action=connect&User={CACHE_USER}"
        "&ResourceType=ServerlessCache')\n"
        "SigV4QueryAuth(Credentials(os.environ['AWS_ACCESS_KEY_ID'],"
        " os.environ['AWS_SECRET_ACCESS_KEY'], os.environ['AWS_SESSION_TOKEN']),"
        " 'elasticache', 'ca-central-1', 900).add_auth(r)",
        "botocore",
    ),
    "elasticache: leadlookup.sigv4": (
        "from leadlookup import iam",
        f"iam.elasticache_token_source({CACHE!r}, {CACHE_USER!r}, os.environ)()",
        "leadlookup",
    ),
}


# Standard-library modules the layer's data path imports before any token is made (db.py,
# settings.py, the cache): with them loaded first, a row shows the signer's own cost.
PRELUDE = "import json, dataclasses, typing, re, ssl, hashlib, hmac, datetime, threading\n"
PRELUDE += "import urllib.parse, pathlib, contextlib, select, uuid\n"


def child_source(imports: str, sign: str, prelude: str = "") -> str:
    """The program one sample runs."""
    return (
        CREDENTIALS
        + prelude
        + "import json, time\n"
        + "t0 = time.perf_counter()\n"
        + imports
        + "\nt1 = time.perf_counter()\n"
        + sign
        + "\nt2 = time.perf_counter()\n"
        + "print(json.dumps({'import_ms': (t1 - t0) * 1e3, 'sign_ms': (t2 - t1) * 1e3}))\n"
    )


def sample(python313: str, source: str, path: str) -> dict[str, float]:
    """One fresh process: its import/sign times, and what -X importtime counted."""
    env = {**os.environ, "PYTHONPATH": path, "PYTHONNOUSERSITE": "1"}
    done = subprocess.run(
        [python313, "-X", "importtime", "-c", source],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    modules = 0
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            modules += 1
    result["modules"] = modules
    return result


def run(runs: int) -> dict[str, Any]:
    """Measure every variant ``runs`` times; the medians per variant."""
    python313 = find_python313()
    if python313 is None:
        raise SystemExit("python3.13 is needed (pyenv install 3.13)")
    path = os.pathsep.join([str(LAYER), str(toolchain.runtime_boto3(python313))])
    report: dict[str, Any] = {"python": python313, "runs": runs, "variants": {}}
    for name, (imports, sign, _) in VARIANTS.items():
        for mode, prelude in (("alone", ""), ("after stdlib prelude", PRELUDE)):
            source = child_source(imports, sign, prelude)
            sample(python313, source, path)  # warm-up: writes bytecode
            samples = [sample(python313, source, path) for _ in range(runs)]
            report["variants"][f"{name} [{mode}]"] = {
                key: round(statistics.median(s[key] for s in samples), 2)
                for key in ("import_ms", "sign_ms", "modules")
            }
    return report


def table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table."""
    lines = [f"{'variant':62} {'import ms':>10} {'sign ms':>9} {'total ms':>9} {'modules':>8}"]
    for name, v in report["variants"].items():
        total = v["import_ms"] + v["sign_ms"]
        lines.append(
            f"{name:62} {v['import_ms']:10.1f} {v['sign_ms']:9.2f} {total:9.1f} {v['modules']:8.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    report = run(args.runs)
    print(table(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
