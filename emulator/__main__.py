"""`python -m emulator [--host H] --port P --key K [--key K2] [--latency S] [--max-in-flight N]
[--rate R]`: serve until Ctrl-C or SIGTERM. `--host` is 127.0.0.1 unless given (the compose
file's emulator listens on its container's network). `--max-in-flight` and `--rate` turn on the
rate-limit mode (per key: at most N requests at once and R a second, else 429 with
Retry-After)."""

import argparse
import signal

from emulator import Emulator
from emulator.limits import RateLimit

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface of a container)",
    )
    parser.add_argument("--port", type=int, default=0, help="port on the host (0: a free one)")
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
    emulator = Emulator(
        keys=args.key,
        latency=args.latency,
        port=args.port,
        host=args.host,
        max_in_flight=limit.max_in_flight,
        rate=limit.rate,
    )
    try:
        emulator.start()
    except OSError as error:  # an address not on this machine, a port in use
        parser.error(f"cannot listen on {args.host} port {args.port}: {error.strerror or error}")
    with emulator:
        print(emulator.base_url, flush=True)
        signal.sigwait(STOP_SIGNALS)


if __name__ == "__main__":
    main()
