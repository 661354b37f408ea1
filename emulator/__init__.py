"""A stdlib-only stand-in for the umamiai Threads API (OpenAI Assistants v2 compatible).

with Emulator(keys=["sk-test-..."]) as emu:
    emu.base_url  # "http://127.0.0.1:PORT/v1"
"""

from emulator.server import Emulator

__all__ = ["Emulator"]
