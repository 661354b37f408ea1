"""`python -m emulator --port P --key K [--key K2] [--latency S]`: serve until Ctrl-C or SIGTERM."""

import argparse
import signal

from emulator import Emulator

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument(
        "--key", action="append", required=True, help="an accepted API key (repeatable)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="delay before each answer (s)")
    args = parser.parse_args(argv)
    # Blocked before the server threads start (they inherit the mask), so only the sigwait
    # below receives Ctrl-C or a `kill`, and the server always shuts down cleanly.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    with Emulator(keys=args.key, latency=args.latency, port=args.port) as emulator:
        print(emulator.base_url, flush=True)
        signal.sigwait(STOP_SIGNALS)


if __name__ == "__main__":
    main()
