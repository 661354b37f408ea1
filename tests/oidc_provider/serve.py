"""Run the test OpenID Connect provider: `python -m tests.oidc_provider.serve [--port N]`.

Generates an RS256 key, migrates its database (OIDC_PROVIDER_DATABASE), binds 127.0.0.1 (port
0: a free one), prints one JSON line `{"issuer": ..., "port": ...}` on stdout, then serves
until it is stopped (SIGTERM, Ctrl+C, or its parent process going away).
`process.start_provider` runs this in a subprocess.
"""

import argparse
import json
import os
import sys
import threading
import time

from jwcrypto import jwk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    key = jwk.JWK.generate(kty="RSA", size=2048)
    os.environ["OIDC_PROVIDER_RSA_KEY"] = key.export_to_pem(
        private_key=True, password=None
    ).decode()

    import django
    from django.core.management import call_command
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadedWSGIServer(("127.0.0.1", args.port), QuietHandler)
    server.set_app(get_wsgi_application())
    port = server.server_address[1]
    parent = os.getppid()

    def stop_with_parent() -> None:
        """Stop once the process that started this one is gone: no orphaned provider."""
        while os.getppid() == parent:
            time.sleep(1)
        server.shutdown()

    threading.Thread(target=stop_with_parent, daemon=True).start()
    print(json.dumps({"issuer": f"http://127.0.0.1:{port}/o", "port": port}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
