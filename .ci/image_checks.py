"""CI only (.ci/image.sh): what a user does in the compose stack, over real HTTP.

`work`: log in (a real POST with the CSRF token and the session cookie), add the emulator's
key, make three threads upstream and import them, bulk delete two of them and wait for the
worker container to finish the job; the two are gone upstream. Writes what it made to --state.
`still-there` (after `compose down` and `up`): log in again; the key, the kept thread and the
finished job are all still there.

It talks to gunicorn directly with `X-Forwarded-Proto: https`, as the TLS proxy in front would.
Each failure exits 1 with one line saying what was expected and what came.
"""

import argparse
import json
import re
import sys
import time
from pathlib import Path

import requests

TIMEOUT = 15
KEY_LABEL = "CI emulator key"


class CheckFailed(Exception):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class Browser:
    """A requests session that behaves like a browser behind the TLS proxy."""

    def __init__(self, web: str) -> None:
        self.web = web
        self.session = requests.Session()
        origin = "https://" + web.removeprefix("http://")
        self.session.headers.update(
            {"X-Forwarded-Proto": "https", "Origin": origin, "Referer": origin + "/"}
        )

    def _behind_the_proxy(self) -> None:
        """Secure cookies go to gunicorn over plain HTTP too: it stands for the proxy's hop."""
        for cookie in self.session.cookies:
            cookie.secure = False

    def get(self, path: str, status: int = 200) -> str:
        response = self.session.get(self.web + path, timeout=TIMEOUT, allow_redirects=False)
        self._behind_the_proxy()
        expect(response.status_code == status, f"GET {path}: {response.status_code}, not {status}")
        return response.text

    def post(self, path: str, data: dict[str, object], status: int = 302) -> str:
        """POST the form on `path` with its CSRF token: the redirect's target (or the page)."""
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.get(path))
        expect(token is not None, f"no CSRF token in the form on {path}")
        assert token is not None
        response = self.session.post(
            self.web + path,
            data={"csrfmiddlewaretoken": token[1], **data},
            timeout=TIMEOUT,
            allow_redirects=False,
        )
        self._behind_the_proxy()
        expect(
            response.status_code == status,
            f"POST {path}: {response.status_code}, not {status}: {response.text[:300]!r}",
        )
        return response.headers["Location"] if status == 302 else response.text

    def log_in(self, username: str, password: str) -> None:
        landed = self.post("/accounts/login/", {"login": username, "password": password})
        expect(landed.endswith("/overview/"), f"the log-in went to {landed}, not the overview")
        expect(username in self.get("/overview/"), "the overview does not name the user")


def upstream(emulator: str, key: str, method: str, path: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2"}
    return requests.request(method, f"{emulator}/v1{path}", headers=headers, timeout=TIMEOUT)


def wait_for_job(browser: Browser, job: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        page = browser.get(job)
        if "Finished</h2>" in page:
            return page
        expect("Stopped by an error" not in page, f"the bulk delete job {job} failed")
        time.sleep(1)
    raise CheckFailed(f"the bulk delete job {job} did not finish within {seconds:.0f} s")


def work(args: argparse.Namespace) -> None:
    browser = Browser(args.web)
    browser.log_in(args.username, args.password)
    print("image_checks: logged in", file=sys.stderr)

    browser.post("/keys/new/", {"label": KEY_LABEL, "secret": args.key, "team": ""})
    expect(KEY_LABEL in browser.get("/keys/"), "the added key is not listed")
    print("image_checks: key added (verified against the emulator)", file=sys.stderr)

    made = [upstream(args.emulator, args.key, "POST", "/threads") for _ in range(3)]
    expect(all(r.status_code == 200 for r in made), "the emulator did not make the threads")
    thread_ids = [r.json()["id"] for r in made]
    form = browser.get("/threads/import/")
    key_pk = re.search(r'<option value="(\d+)"[^>]*>\s*' + re.escape(KEY_LABEL), form)
    expect(key_pk is not None, "the import form does not offer the key")
    assert key_pk is not None
    imported = browser.post(
        "/threads/import/", {"api_key": key_pk[1], "thread_ids": "\n".join(thread_ids)}, 200
    )
    expect(all(t in imported for t in thread_ids), "the import's results do not name the threads")
    pks = listed_threads(browser)
    expect(set(thread_ids) <= set(pks), f"the imported threads are not all listed: {pks}")
    print(f"image_checks: {len(thread_ids)} threads imported", file=sys.stderr)

    doomed, kept = thread_ids[:2], thread_ids[2]
    job = browser.post("/threads/bulk-delete/", {"thread": [pks[t] for t in doomed]})
    expect(re.fullmatch(r"/jobs/\d+/", job) is not None, f"the bulk delete went to {job}")
    page = wait_for_job(browser, job, args.job_seconds)
    expect("2 of 2 threads done" in page, "the job page does not say 2 of 2 threads done")
    for thread_id in doomed:
        gone = upstream(args.emulator, args.key, "GET", f"/threads/{thread_id}").status_code
        expect(gone == 404, f"{thread_id} is still upstream after the job ({gone})")
    expect(
        upstream(args.emulator, args.key, "GET", f"/threads/{kept}").status_code == 200,
        f"{kept}, not selected, is gone upstream",
    )
    expect(set(listed_threads(browser)) == {kept}, "the deleted threads are still listed")
    print(f"image_checks: bulk delete {job} finished, 2 threads gone upstream", file=sys.stderr)
    args.state.write_text(json.dumps({"job": job, "kept": kept}))


def listed_threads(browser: Browser) -> dict[str, str]:
    """The thread list's rows: thread id -> the pk its checkbox sends."""
    rows = re.findall(
        r'name="thread" value="(\d+)"[\s\S]*?<code class="id">([^<]+)</code>', browser.get("/")
    )
    return {thread_id: pk for pk, thread_id in rows}


def still_there(args: argparse.Namespace) -> None:
    state = json.loads(args.state.read_text())
    browser = Browser(args.web)
    browser.log_in(args.username, args.password)
    expect(KEY_LABEL in browser.get("/keys/"), "the key is gone after the restart")
    expect(set(listed_threads(browser)) == {state["kept"]}, "the thread list changed")
    expect("2 of 2 threads done" in browser.get(state["job"]), "the job's page lost its outcome")
    print(
        "image_checks: the user, the key, the thread and the job are still there", file=sys.stderr
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["work", "still-there"])
    parser.add_argument("--web", required=True, help="http://127.0.0.1:PORT of gunicorn")
    parser.add_argument("--emulator", required=True, help="http://127.0.0.1:PORT of the emulator")
    parser.add_argument("--key", required=True, help="the key the emulator accepts")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--state", type=Path, required=True, help="what `work` made (JSON)")
    parser.add_argument("--job-seconds", type=float, default=120.0)
    args = parser.parse_args()
    try:
        (work if args.what == "work" else still_there)(args)
    except (CheckFailed, requests.RequestException) as error:
        print(f"image_checks: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
