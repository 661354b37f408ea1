"""The web container's healthcheck: GET /health/ on this container's gunicorn; exit 0 on 200.

It asks for the first name in DJANGO_ALLOWED_HOSTS (a host Django answers to), over plain HTTP:
/health/ is exempt from the HTTPS redirect. The port is BIND's, as the entrypoint binds.
"""

import http.client
import os
import sys


def main() -> int:
    port = int(os.environ.get("BIND", "0.0.0.0:8000").rsplit(":", 1)[1])
    allowed = os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",")
    host = next((name.strip().lstrip(".") for name in allowed if name.strip("*. ")), "localhost")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/health/", headers={"Host": host})
        response = connection.getresponse()
        body = response.read(500).decode(errors="replace")
    except OSError as error:
        print(f"/health/ did not answer: {error}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if response.status != 200:
        print(f"/health/ answered {response.status}: {body}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
