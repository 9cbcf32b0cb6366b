"""The provider emulators speak the vendors' shapes: the official SDKs, used as clients, send
through them and parse their answers (twilio, line-bot-sdk, python-telegram-bot, viberbot,
wechatpy); faults answer as each provider does; idempotency keys are honoured."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from aiohttp import web

from parley.app.emulator.providers import Emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[str, Emulator]]:
    """The emulator on a free port, in a thread of its own (the SDKs here are synchronous)."""
    emu = Emulator()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def start() -> web.AppRunner:
        runner = web.AppRunner(emu.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runners: list[web.AppRunner] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runners.append(loop.run_until_complete(start()))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield f"http://127.0.0.1:{port}", emu
    asyncio.run_coroutine_threadsafe(runners[0].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_twilio_sdk_sends_and_reads_the_sid(emulator) -> None:
    from twilio.rest import Client

    url, emu = emulator
    client = Client("ACemu0001", "token")
    client.api.base_url = url
    msg = client.messages.create(to="+33612345678", from_="+33644600000", body="hello from twilio sdk")
    assert msg.sid.startswith("SM") and msg.status == "queued"
    assert emu.book.counts[("twilio", "ACemu0001")]["delivered"] == 1


def test_line_sdk_push_with_a_retry_key_is_delivered_once(emulator) -> None:
    from linebot.v3.messaging import ApiClient, Configuration, MessagingApi, PushMessageRequest, TextMessage
    from linebot.v3.messaging.exceptions import ApiException

    url, emu = emulator
    api = MessagingApi(ApiClient(Configuration(host=url, access_token="line-sdk-token")))
    req = PushMessageRequest(to="Ucustomer", messages=[TextMessage(text="hello from line sdk")])
    key = "123e4567-e89b-12d3-a456-426614174000"
    first = api.push_message(req, x_line_retry_key=key)
    assert first.sent_messages[0].id
    with pytest.raises(ApiException) as again:
        api.push_message(req, x_line_retry_key=key)
    assert again.value.status == 409
    c = emu.book.counts[("line", "line-sdk-token")]
    assert c["delivered"] == 1 and c["key_replays"] == 1


def test_telegram_sdk_sends_and_parses_the_message(emulator) -> None:
    import telegram

    url, emu = emulator

    async def send() -> telegram.Message:
        async with telegram.Bot("7000001:AAsdk", base_url=f"{url}/bot") as bot:
            return await bot.send_message(chat_id=4242, text="hello from ptb")

    msg = asyncio.run(send())
    assert msg.message_id > 0 and msg.chat.id == 4242 and msg.text == "hello from ptb"
    assert emu.book.counts[("telegram", "7000001:AAsdk")]["delivered"] == 1


def test_viber_sdk_sends_and_reads_the_token(emulator) -> None:
    from viberbot import Api, BotConfiguration
    from viberbot.api.messages import TextMessage

    url, emu = emulator
    api = Api(BotConfiguration(name="Acme", avatar="", auth_token="viber-sdk-token"))
    api._request_sender._viber_bot_api_url = f"{url}/pa"  # the SDK has no setting for its endpoint
    tokens = api.send_messages("viber-user==", [TextMessage(text="hello from viberbot")])
    assert tokens and int(tokens[0]) > 0
    assert emu.book.counts[("viber", "viber-sdk-token")]["delivered"] == 1


def test_wechat_sdk_gets_a_token_and_sends(emulator) -> None:
    from wechatpy import WeChatClient

    url, emu = emulator

    class Client(WeChatClient):
        API_BASE_URL = f"{url}/cgi-bin/"

        def fetch_access_token(self):  # the SDK's token URL is fixed: the emulator's instead
            return self._fetch_access_token(url=f"{url}/cgi-bin/token", params={
                "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})

    client = Client("wxsdk0001", "secret")
    answer = client.message.send_text("oOpenId", "hello from wechatpy")
    assert answer["errcode"] == 0
    c = emu.book.counts[("wechat", "wxsdk0001")]
    assert c["tokens"] == 1 and c["delivered"] == 1


def test_rbm_repeated_message_id_answers_409_already_exists(emulator) -> None:
    url, emu = emulator
    body = {"contentMessage": {"text": "hello rbm"}}
    path = f"{url}/v1/phones/+33612345678/agentMessages?messageId=m-1&agentId=agent-x"
    headers = {"Authorization": "Bearer t"}
    assert requests.post(path, json=body, headers=headers, timeout=5).status_code == 200
    again = requests.post(path, json=body, headers=headers, timeout=5)
    assert again.status_code == 409 and again.json()["error"]["status"] == "ALREADY_EXISTS"
    assert emu.book.counts[("rbm", "agent-x")]["delivered"] == 1


@pytest.mark.parametrize(("provider", "path", "body", "status"), [
    ("whatsapp", "/v21.0/555/messages",
     {"messaging_product": "whatsapp", "to": "1", "type": "text", "text": {"body": "x"}}, 429),
    ("telegram", "/bot9:x/sendMessage", {"chat_id": 1, "text": "x"}, 429),
    ("viber", "/pa/send_message", {"receiver": "u", "type": "text", "text": "x"}, 200),
])
def test_rate_limit_faults_answer_like_the_provider(emulator, provider, path, body, status) -> None:
    url, emu = emulator
    requests.post(f"{url}/_emulator/faults", json={"provider": provider, "kind": "rate_limit", "count": 1,
                                                   "retry_after": 2}, timeout=5)
    headers = {"Authorization": "Bearer t", "X-Viber-Auth-Token": "v"}
    r = requests.post(url + path, json=body, headers=headers, timeout=5)
    assert r.status_code == status
    if provider == "telegram":
        assert r.json()["parameters"]["retry_after"] == 2
    if provider == "viber":
        assert r.json()["status"] == 12
    if provider == "whatsapp":
        assert r.json()["error"]["code"] == 130429 and r.headers["Retry-After"] == "2"
