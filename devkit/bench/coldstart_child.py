"""One cold start, in a fresh interpreter: import a handler the way Lambda does, answer its
first event, then a second one. Standard library only before the handler's own imports, so
nothing of the bench is preloaded.

    python coldstart_child.py '<json: code_dir, module, handler, layer_dirs, events, out>'
"""

import json
import os
import sys
import time


class _Context:
    """The parts of the Lambda context object Powertools reads."""

    function_name = "bench-cold-start"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-cold-start"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/bench-cold-start"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self):
        return 10_000


def main():
    args = json.loads(sys.argv[1])
    # The function's stdout (logs, EMF) goes where Lambda would ship it; here, nowhere.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    events = args["events"]
    sys.path[:0] = [args["code_dir"], *args["layer_dirs"]]
    sys.stderr.write("bench: import start\n")
    sys.stderr.flush()
    t0 = time.perf_counter()
    module = __import__(args["module"])
    t1 = time.perf_counter()
    sys.stderr.write("bench: import done\n")
    sys.stderr.flush()
    t1 += time.perf_counter() - t1  # the marker's own write is not the handler's time
    handler = getattr(module, args["handler"])
    first = handler(events[0], _Context())
    t2 = time.perf_counter()
    sys.stderr.write("bench: first answer\n")
    sys.stderr.flush()
    handler(events[1], _Context())
    t3 = time.perf_counter()
    with open(args["out"], "w") as out:
        json.dump(
            {
                "import_ms": (t1 - t0) * 1000,
                "first_answer_ms": (t2 - t1) * 1000,
                "second_answer_ms": (t3 - t2) * 1000,
                "first_response": first,
            },
            out,
            default=str,
        )


main()
