"""Run the benchmarks: `python -m bench [NAME ...]` (all of them without a name).

Run it through the launcher so it finds PostgreSQL and Redis as the tests do:
`make bench` or `make bench NAME=consume`. With `--baseline REF` (or BENCH_BASELINE=REF;
`make bench NAME=consume BASELINE=REF`) consume, balance and history serve the commit REF beside
the current code and compare the two in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import baseline, harness

NAMES = ("consume", "balance", "history", "onboarding", "webhooks", "routing", "sweep", "console")
# The benchmarks that serve a baseline commit beside the current code when asked.
WITH_BASELINE = ("consume", "balance", "history")


def _runner(name: str) -> Callable[[Any], dict[str, Any]]:
    if name in ("consume", "balance"):
        from bench import hotpath

        return lambda ctx: hotpath.run(ctx, name)
    module = importlib.import_module(f"bench.{name}")
    run: Callable[[Any], dict[str, Any]] = module.run
    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(NAMES)}")
    parser.add_argument("--no-plot", action="store_true", help="skip docs/benchmarks-consume.png")
    parser.add_argument("--baseline", metavar="REF", default=baseline.requested_ref(),
                        help="a git ref to serve beside the current code (default: "
                             "$BENCH_BASELINE)")
    args = parser.parse_args(argv)
    names = [n for part in args.names for n in part.replace(",", " ").split()] or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    ref: str | None = args.baseline or None
    if ref and not any(n in WITH_BASELINE for n in names):
        harness.say(f"the baseline {ref} is ignored: only {', '.join(WITH_BASELINE)} use one")
        ref = None
    elif ref and any(n not in WITH_BASELINE for n in names):
        harness.say(f"the baseline {ref} applies to {', '.join(WITH_BASELINE)} only")
    harness.install_signal_handlers()
    started = time.monotonic()
    from bench.context import Context

    ctx = Context(baseline_ref=ref)
    failed: list[str] = []
    try:
        for name in names:
            harness.say(f"--- {name}")
            began = time.monotonic()
            try:
                result = _runner(name)(ctx)
            except (Exception, SystemExit) as exc:  # one broken benchmark must not stop the rest
                harness.say(f"{name} FAILED: {exc!r}")
                traceback.print_exc()
                failed.append(name)
                continue
            result["duration_seconds"] = round(time.monotonic() - began, 1)
            path = harness.write_result(name, result)
            where = path.relative_to(harness.ROOT)
            harness.say(f"{name}: {result['duration_seconds']} s, wrote {where}")
            if result.get("correct") is False:
                failed.append(name)
            if name == "consume" and not args.no_plot:
                from bench import plot

                plot.consume(result)
    except KeyboardInterrupt:
        harness.say("interrupted; stopping everything started")
        return 130
    finally:
        ctx.close()
    harness.say(f"done in {time.monotonic() - started:.0f} s")
    if failed:
        harness.say(f"FAILED (error or correctness check): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
