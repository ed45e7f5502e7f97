"""``make bench``: measured latency, round trips, cold start, load and data scale.

The real handlers run in-process on API Gateway and SQS events against real PostgreSQL and
Redis, behind loopback proxies that count round trips and add network latency. See
BENCHMARKS.md for what each number means; ``python -m devkit.bench --help`` for the knobs.
"""

from devkit import lambda_env

# Every module of the bench imports the layer, which Lambda finds at /opt/python.
lambda_env.add_layers_to_path()
