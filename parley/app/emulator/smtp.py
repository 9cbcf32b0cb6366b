"""The e-mail emulator: a minimal SMTP server (EHLO, AUTH, MAIL, RCPT, DATA, RSET, NOOP, QUIT)
filing each message in the provider emulators' book under provider ``email`` (account: the
envelope sender); faults apply at the end of DATA (an SMTP code: 4xx temporary, 5xx permanent).
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from parley.app.emulator.providers import Emulator

class SmtpServer:
    """A minimal SMTP server (EHLO, AUTH, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that files each
    message in the emulator's book under provider ``email``; faults apply at the end of DATA."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        say("220 emulator ESMTP")
        sender = ""
        rcpts: list[str] = []
        try:
            while line := await reader.readline():
                cmd = line.decode(errors="replace").strip()
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    say("250-emulator")
                    say("250-AUTH PLAIN LOGIN")
                    say("250 SIZE 35882577")
                elif verb == "HELO":
                    say("250 emulator")
                elif verb == "AUTH":
                    say("235 2.7.0 Authentication successful")
                elif verb == "MAIL":
                    sender, rcpts = _address(cmd), []
                    say("250 2.1.0 Ok")
                elif verb == "RCPT":
                    rcpts.append(_address(cmd))
                    say("250 2.1.5 Ok")
                elif verb == "DATA":
                    say("354 End data with <CR><LF>.<CR><LF>")
                    await writer.drain()
                    data = await reader.readuntil(b"\r\n.\r\n")
                    say(await self._message(sender, rcpts, data))
                elif verb in ("RSET", "NOOP"):
                    say("250 2.0.0 Ok")
                elif verb == "QUIT":
                    say("221 2.0.0 Bye")
                    await writer.drain()
                    break
                else:
                    say("502 5.5.2 Error: command not recognized")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _message(self, sender: str, rcpts: list[str], data: bytes) -> str:
        to = ",".join(rcpts)
        mid = next((ln.split(b":", 1)[1].strip().decode() for ln in data.split(b"\r\n")
                    if ln.lower().startswith(b"message-id:")), "")
        self.emu.book.counts[("email", sender)]["requests"] += 1
        f = self.emu._fault("email", sender)
        if f is not None and f.kind != "timeout":
            self.emu.book.counts[("email", sender)]["refused"] += 1
            code = int(f.code or f.status)
            return f"{code} {'4.3.0 temporary' if code < 500 else '5.7.1 refused'} (emulated)"
        body = data.split(b"\r\n\r\n", 1)[-1]
        self.emu._deliver("email", sender, to, body.decode(errors="replace")[:200], mid.encode() or data, mid)
        if f is not None:
            await asyncio.sleep(f.delay_s)
        return f"250 2.0.0 Ok: queued as {mid}"


def _address(cmd: str) -> str:
    """The address of ``MAIL FROM:<a@b> SIZE=1`` / ``RCPT TO:<a@b>``."""
    m = re.search(r"<([^>]*)>", cmd)
    return m.group(1) if m else cmd.split(":", 1)[-1].strip()
