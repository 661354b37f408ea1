"""`python -m emulator --port P --key K [--key K2] [--latency S] [--max-in-flight N] [--rate R]`:
serve until Ctrl-C or SIGTERM. `--max-in-flight` and `--rate` turn on the rate-limit mode (per
key: at most N requests at once and R a second, else 429 with Retry-After)."""

import argparse
import signal

from emulator import Emulator
from emulator.limits import RateLimit

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument(
        "--key", action="append", required=True, help="an accepted API key (repeatable)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="delay before each answer (s)")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        metavar="N",
        help="rate-limit mode: at most N requests in flight per key, else 429",
    )
    parser.add_argument(
        "--rate",
        type=float,
        metavar="R",
        help="rate-limit mode: at most R requests a second per key (burst: max(1, R)), else 429",
    )
    args = parser.parse_args(argv)
    try:
        limit = RateLimit(args.max_in_flight, args.rate)
    except ValueError as error:
        parser.error(str(error))
    # Blocked before the server threads start (they inherit the mask), so only the sigwait
    # below receives Ctrl-C or a `kill`, and the server always shuts down cleanly.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    with Emulator(
        keys=args.key,
        latency=args.latency,
        port=args.port,
        max_in_flight=limit.max_in_flight,
        rate=limit.rate,
    ) as emulator:
        print(emulator.base_url, flush=True)
        signal.sigwait(STOP_SIGNALS)


if __name__ == "__main__":
    main()
