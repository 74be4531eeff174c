"""An independent Sallyport client, written from README.md and docs/PROTOCOL.md only.

Pieces:
  * Seal        - section 5: X25519 + HKDF-SHA256 + AES-256-GCM, AAD, directions.
  * Router      - section 3: HTTP POSTs; section 4.1: the client WebSocket.
  * Tube        - section 6: aiortc peer connection, one negotiated channel id 0,
                  the framed connection protocol with windows.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger("sallyport-interop")

# ---------------------------------------------------------------------------
# PROTOCOL.md 6.1: "A receiver accepts datagrams of any size up to 65,507 bytes, and SCTP
# packets up to 16,384 bytes (one DTLS record)." On loopback the gateway really sends
# DTLS records that large. aiortc reads each decrypted DTLS record into a 1,500-byte buffer
# (RTCDtlsTransport: `self._ssl.recv(1500)`), so larger SCTP packets are silently dropped
# and the tube stalls. We widen that read while LARGE_DTLS_RECORDS is true.
# ---------------------------------------------------------------------------
import OpenSSL.SSL as _SSL  # noqa: E402

LARGE_DTLS_RECORDS = True
_orig_recv = _SSL.Connection.recv


def _recv(self, bufsiz, flags=None):
    if LARGE_DTLS_RECORDS:
        bufsiz = max(bufsiz, 65_536)
    return _orig_recv(self, bufsiz, flags)


_SSL.Connection.recv = _recv


def set_large_dtls_records(on: bool):
    global LARGE_DTLS_RECORDS
    LARGE_DTLS_RECORDS = on

LABEL = b"sallyport/seal/v1"
PROTOCOL_VERSION = 1

# ---------------------------------------------------------------------------
# Section 5: sealing
# ---------------------------------------------------------------------------


def b64e(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def b64d(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class SealError(Exception):
    pass


class Seal:
    """Keys of one conversation, client side."""

    def __init__(self, conversation_id: str, gateway_pk_b64: str, esk: Optional[X25519PrivateKey] = None):
        self.conv = conversation_id
        self.gateway_pk = b64d(gateway_pk_b64)
        if len(self.gateway_pk) != 32:
            raise ValueError("gateway public key must be 32 bytes")
        self.esk = esk or X25519PrivateKey.generate()
        self.epk = self.esk.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        shared = self.esk.exchange(X25519PublicKey.from_public_bytes(self.gateway_pk))
        okm = HKDF(
            algorithm=hashes.SHA256(),
            length=64,
            salt=self.conv.encode("utf-8"),
            info=LABEL + self.epk + self.gateway_pk,
        ).derive(shared)
        self.c2g = okm[:32]
        self.g2c = okm[32:]

    def aad(self, direction: str, kind: str) -> bytes:
        return b"\x00".join(
            [LABEL, self.conv.encode(), direction.encode(), kind.encode()]
        )

    def seal(self, kind: str, body: dict, *, include_epk: bool = True) -> dict:
        nonce = os.urandom(12)
        ct = AESGCM(self.c2g).encrypt(nonce, compact(body), self.aad("c2g", kind))
        out = {}
        if include_epk:
            out["epk"] = b64e(self.epk)
        out["nonce"] = b64e(nonce)
        out["ct"] = b64e(ct)
        return out

    def open(self, kind: str, payload: dict) -> dict:
        try:
            nonce = b64d(payload["nonce"])
            ct = b64d(payload["ct"])
            pt = AESGCM(self.g2c).decrypt(nonce, ct, self.aad("g2c", kind))
        except Exception as e:  # noqa: BLE001
            raise SealError(f"cannot open g2c {kind}: {e!r}") from e
        return json.loads(pt)


# ---------------------------------------------------------------------------
# Section 3 / 4.1: the router
# ---------------------------------------------------------------------------


class HttpError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body

    @property
    def code(self) -> Optional[str]:
        return self.body.get("code") if isinstance(self.body, dict) else None


# TLS (README, profile keys): the router serves https and wss; the profile's `ca_file`
# names the CA to trust instead of the system's roots (`sallyport lab` writes its own).
SSL_CONTEXT: ssl.SSLContext | bool = True


def use_ca_file(path: str) -> None:
    global SSL_CONTEXT
    SSL_CONTEXT = ssl.create_default_context(cafile=path)


def client_session(**kw) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=SSL_CONTEXT), **kw)


class Router:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token
        self.http = client_session(
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=90),
        )

    async def close(self):
        await self.http.close()

    async def request(self, method: str, path: str, *, data: Any = None, raw: bytes | None = None,
                      headers: dict | None = None, auth: bool = True) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        kw: dict[str, Any] = {}
        if raw is not None:
            kw["data"] = raw
        elif data is not None:
            kw["data"] = compact(data)
            hdrs.setdefault("Content-Type", "application/json")
        if not auth:
            sess = client_session(timeout=aiohttp.ClientTimeout(total=90))
        else:
            sess = self.http
        try:
            async with sess.request(method, self.url + path, headers=hdrs, **kw) as r:
                text = await r.text()
                try:
                    body = json.loads(text) if text else None
                except ValueError:
                    body = text
                return r.status, body
        finally:
            if not auth:
                await sess.close()

    async def post_message(self, gateway: str, msg: dict) -> dict:
        st, body = await self.request("POST", f"/v1/gateways/{gateway}/messages", data=msg)
        if st != 200:
            raise HttpError(st, body)
        return body

    async def resources(self) -> list[dict]:
        st, body = await self.request("GET", "/v1/resources")
        if st != 200:
            raise HttpError(st, body)
        return body["resources"]

    async def client_socket(self) -> "ClientSocket":
        ws_url = re.sub(r"^http", "ws", self.url) + "/v1/ws/client"
        ws = await self.http.ws_connect(ws_url, autoping=True, heartbeat=None, max_msg_size=0)
        cs = ClientSocket(ws)
        cs.start()
        return cs


class ClientSocket:
    """The client WebSocket: subscribe, and route `message` frames per conversation."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.queues: dict[str, asyncio.Queue] = {}
        self.control: asyncio.Queue = asyncio.Queue()  # subscribed / error frames
        self.unexpected: list[Any] = []
        self.closed = asyncio.Event()
        self.close_code: Optional[int] = None
        self._task: Optional[asyncio.Task] = None
        self._sub_lock = asyncio.Lock()

    def start(self):
        self._task = asyncio.create_task(self._reader())

    def queue(self, conv: str) -> asyncio.Queue:
        return self.queues.setdefault(conv, asyncio.Queue())

    async def _reader(self):
        try:
            async for m in self.ws:
                if m.type == aiohttp.WSMsgType.TEXT:
                    try:
                        f = json.loads(m.data)
                    except ValueError:
                        self.unexpected.append(m.data)
                        continue
                    t = f.get("type")
                    if t == "message":
                        self.queue(f["conversation_id"]).put_nowait((time.perf_counter(), f))
                    elif t in ("subscribed", "error"):
                        self.control.put_nowait(f)
                    else:
                        self.unexpected.append(f)
                else:
                    self.unexpected.append((m.type, m.data))
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()

    async def subscribe(self, conv: str, timeout: float = 5.0) -> dict:
        """Returns the `subscribed` frame, or raises with the `error` frame.

        The `error` frame has no conversation id, so we keep one subscribe in flight."""
        async with self._sub_lock:
            self.queue(conv)
            await self.ws.send_str(json.dumps({"type": "subscribe", "conversation_id": conv}))
            f = await asyncio.wait_for(self.control.get(), timeout)
            if f.get("type") == "subscribed" and f.get("conversation_id") == conv:
                return f
            raise HttpError(0, f)

    async def unsubscribe(self, conv: str):
        await self.ws.send_str(json.dumps({"type": "unsubscribe", "conversation_id": conv}))

    async def send_raw(self, data):
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def close(self):
        await self.ws.close()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)


# ---------------------------------------------------------------------------
# Section 6: frames
# ---------------------------------------------------------------------------

OPEN, OPENED, DATA, WINDOW, EOF, RESET, SHUTDOWN = range(1, 8)
FRAME_NAMES = {1: "OPEN", 2: "OPENED", 3: "DATA", 4: "WINDOW", 5: "EOF", 6: "RESET", 7: "SHUTDOWN"}
INITIAL_WINDOW = 262_144
MAX_FRAME = 65_536
MAX_DATA = MAX_FRAME - 5


def frame(t: int, conn: int, body: bytes = b"") -> bytes:
    return struct.pack(">BI", t, conn) + body


def parse_frame(msg: bytes) -> tuple[int, int, bytes]:
    if len(msg) < 5:
        raise ValueError(f"short frame {msg!r}")
    t, conn = struct.unpack(">BI", msg[:5])
    return t, conn, msg[5:]


class ConnReset(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Conn:
    tube: "Tube"
    id: int
    auto_window: bool = True
    opened: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    t_open_sent: float = 0.0
    t_opened: float = 0.0
    send_credit: int = INITIAL_WINDOW
    credit_changed: asyncio.Event = field(default_factory=asyncio.Event)
    windows_received: list = field(default_factory=list)
    # receive side
    inbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    peer_allowed: int = INITIAL_WINDOW  # bytes the peer may send us in total
    received: int = 0
    consumed_ungranted: int = 0
    window_violation: Optional[str] = None
    eof_sent: bool = False
    eof_received: bool = False
    reset_reason: Optional[str] = None
    log: list = field(default_factory=list)

    # -- frames in -----------------------------------------------------------
    def on_frame(self, t: int, body: bytes):
        self.log.append((time.perf_counter(), FRAME_NAMES[t], len(body) if t == DATA else body))
        if t == OPENED:
            self.t_opened = time.perf_counter()
            if not self.opened.done():
                self.opened.set_result(True)
        elif t == DATA:
            self.received += len(body)
            if self.received > self.peer_allowed and self.window_violation is None:
                self.window_violation = (
                    f"peer sent {self.received} bytes, only {self.peer_allowed} granted"
                )
            self.inbox.put_nowait(body)
        elif t == WINDOW:
            (n,) = struct.unpack(">I", body)
            self.windows_received.append(n)
            self.send_credit += n
            self.credit_changed.set()
        elif t == EOF:
            self.eof_received = True
            self.inbox.put_nowait(None)
        elif t == RESET:
            self.reset_reason = body.decode("utf-8", "replace")
            if not self.opened.done():
                self.opened.set_exception(ConnReset(self.reset_reason))
                self.opened.exception()  # mark retrieved
            self.inbox.put_nowait(ConnReset(self.reset_reason))
            self.credit_changed.set()

    def on_tube_end(self, reason: str):
        if self.reset_reason is None:
            self.reset_reason = f"tube:{reason}"
        if not self.opened.done():
            self.opened.set_exception(ConnReset(self.reset_reason))
            self.opened.exception()  # mark retrieved
        self.inbox.put_nowait(ConnReset(self.reset_reason))
        self.credit_changed.set()

    # -- frames out ----------------------------------------------------------
    async def send(self, data: bytes, *, honour_window: bool = True, chunk: int = MAX_DATA):
        view = memoryview(data)
        while view:
            if self.reset_reason:
                raise ConnReset(self.reset_reason)
            n = min(len(view), chunk)
            if honour_window:
                while self.send_credit <= 0:
                    self.credit_changed.clear()
                    if self.reset_reason:
                        raise ConnReset(self.reset_reason)
                    await self.credit_changed.wait()
                n = min(n, self.send_credit)
            self.tube.send_frame(frame(DATA, self.id, bytes(view[:n])))
            self.send_credit -= n
            view = view[n:]
            await self.tube.drain()

    def send_eof(self):
        self.eof_sent = True
        self.tube.send_frame(frame(EOF, self.id))

    def send_reset(self, reason: str):
        self.tube.send_frame(frame(RESET, self.id, reason.encode()))

    def grant(self, n: int):
        self.peer_allowed += n
        self.tube.send_frame(frame(WINDOW, self.id, struct.pack(">I", n)))

    async def read(self, timeout: float = 10.0) -> Optional[bytes]:
        """Next chunk, None at EOF; raises ConnReset."""
        item = await asyncio.wait_for(self.inbox.get(), timeout)
        if isinstance(item, ConnReset):
            raise item
        if item is not None and self.auto_window:
            self.consumed_ungranted += len(item)
            if self.consumed_ungranted >= INITIAL_WINDOW // 4:
                self.grant(self.consumed_ungranted)
                self.consumed_ungranted = 0
        return item

    async def read_exactly(self, n: int, timeout: float = 20.0) -> bytes:
        buf = bytearray()
        deadline = time.monotonic() + timeout
        while len(buf) < n:
            chunk = await self.read(max(0.01, deadline - time.monotonic()))
            if chunk is None:
                raise EOFError(f"EOF after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    async def read_to_eof(self, timeout: float = 20.0) -> bytes:
        buf = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            chunk = await self.read(max(0.01, deadline - time.monotonic()))
            if chunk is None:
                return bytes(buf)
            buf += chunk


# ---------------------------------------------------------------------------
# Section 6: the tube
# ---------------------------------------------------------------------------

CAND_RE = re.compile(r"^a=(candidate:.*)$")


def split_candidates(sdp: str) -> tuple[str, list[str], str]:
    """Returns (sdp without a=candidate/a=end-of-candidates lines, candidates, mid)."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    out, cands, mid = [], [], "0"
    for ln in lines:
        m = CAND_RE.match(ln)
        if ln.startswith("a=mid:"):
            mid = ln[len("a=mid:"):]
        if m:
            cands.append(m.group(1))
            continue
        if ln == "a=end-of-candidates":
            continue
        out.append(ln)
    return "\r\n".join(out), cands, mid


@dataclass
class Timings:
    t_post: float = 0.0
    t_answer: float = 0.0
    t_http_200: float = 0.0
    t_channel_open: float = 0.0
    t_first_opened: float = 0.0

    def ms(self, t: float) -> float:
        return (t - self.t_post) * 1000 if t else float("nan")


class Tube:
    def __init__(self, router: Router, sock: Optional[ClientSocket], gateway: str, gateway_pk: str,
                 resource: str, conv_id: str, *, candidate_mode: str = "offer", streamed: bool = True,
                 timeout_ms: int = 10_000, setup: str = "actpass", open_first: bool = False):
        assert candidate_mode in ("offer", "trickle", "both")
        assert setup in ("actpass", "passive")
        self.setup = setup  # "passive": the gateway answers active and is the DTLS client
        self.open_first = open_first  # ask the gateway to open connection 1 at start (6.4)
        self.answer_open_first = False
        self.first_conn: Optional["Conn"] = None
        self.opened_messages: list[dict] = []
        self.router = router
        self.sock = sock
        self.gateway = gateway
        self.resource = resource
        self.conv = conv_id
        self.seal = Seal(conv_id, gateway_pk)
        self.mode = candidate_mode
        self.streamed = streamed
        self.timeout_ms = timeout_ms
        self.pc: Optional[RTCPeerConnection] = None
        self.dc = None
        self.conns: dict[int, Conn] = {}
        self.next_id = 1
        self.timings = Timings()
        self.channel_open = asyncio.Event()
        self.shutdown_reason: Optional[str] = None  # SHUTDOWN received
        self.shutdown_received = asyncio.Event()
        self.unknown_frames: list = []
        self.ignored_frames: list = []
        self.text_messages: list = []
        self.remote_candidates: list[dict] = []
        self.remote_done = False
        self.closed_messages: list[dict] = []
        self.closed_event = asyncio.Event()
        self.signalling_errors: list = []
        self.answer_sdp: Optional[str] = None
        self.offer_sdp: Optional[str] = None
        self.local_candidates: list[str] = []
        self._ws_task: Optional[asyncio.Task] = None
        self._answer_applied = asyncio.Event()
        self.stream_log: list = []
        self.subscribe_before_post = True

    # -- signalling ----------------------------------------------------------
    def envelope(self, kind: str, payload: dict, **extra) -> dict:
        msg = {
            "v": PROTOCOL_VERSION,
            "conversation_id": self.conv,
            "resource": self.resource,
            "kind": kind,
            "stream_response": self.streamed,
            "timeout_ms": self.timeout_ms,
            "payload": payload,
        }
        msg.update(extra)
        return msg

    async def post(self, kind: str, body: dict, **extra) -> dict:
        return await self.router.post_message(self.gateway, self.envelope(kind, self.seal.seal(kind, body), **extra))

    async def _make_offer(self) -> str:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.dc = self.pc.createDataChannel("sallyport", negotiated=True, id=0, ordered=True)

        @self.dc.on("open")
        def _open():
            self.timings.t_channel_open = time.perf_counter()
            self.channel_open.set()

        @self.dc.on("message")
        def _msg(m):
            self._on_message(m)

        @self.dc.on("close")
        def _close():
            self._end_all("channel_closed")

        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)  # aiortc gathers here
        sdp = self.pc.localDescription.sdp
        if self.setup == "passive":
            # aiortc offers actpass and takes the role the answer leaves it (section 6.1)
            sdp = sdp.replace("a=setup:actpass", "a=setup:passive")
        stripped, cands, self.mid = split_candidates(sdp)
        self.local_candidates = cands
        self.mline_index = 0
        self.offer_sdp = sdp if self.mode in ("offer", "both") else stripped
        return self.offer_sdp

    async def start(self, *, open_timeout: float = 30.0, send_done: bool = True):
        offer_sdp = await self._make_offer()
        if self.streamed and self.subscribe_before_post:
            assert self.sock is not None
            await self.sock.subscribe(self.conv)
            self._ws_task = asyncio.create_task(self._ws_consumer())
        body = {"offer": {"type": "offer", "sdp": offer_sdp}, "resource": self.resource}
        if self.open_first:
            body["open_first"] = True
        self.timings.t_post = time.perf_counter()
        post_task = asyncio.create_task(self.post("start", body))
        if self.streamed and not self.subscribe_before_post:
            # subscribe only after the POST has been answered: the router must have
            # kept the streamed answer in the conversation's backlog (section 4.1)
            await post_task
            await self.sock.subscribe(self.conv)
            self._ws_task = asyncio.create_task(self._ws_consumer())
        if self.streamed:
            # apply the answer as soon as it is streamed, before the HTTP 200
            done, _ = await asyncio.wait(
                {post_task, asyncio.create_task(self._answer_applied.wait())},
                return_when=asyncio.FIRST_COMPLETED, timeout=open_timeout)
            if post_task in done and post_task.exception():
                raise post_task.exception()
            if not self._answer_applied.is_set():
                # the HTTP 200 may overtake the WebSocket message: wait a little more
                await post_task
                self.timings.t_http_200 = time.perf_counter()
                try:
                    await asyncio.wait_for(self._answer_applied.wait(), 5)
                except asyncio.TimeoutError:
                    raise RuntimeError(
                        f"no streamed answer 5 s after the POST's 200 ({post_task.result()}); "
                        f"ws unexpected={self.sock.unexpected} errors={self.signalling_errors}")
                self.signalling_errors.append("HTTP 200 arrived before the streamed answer")
            if self.mode in ("trickle", "both"):
                await self.trickle(send_done)
            reply = await post_task
            if not self.timings.t_http_200:
                self.timings.t_http_200 = time.perf_counter()
            # section 3: a streamed start's reply carries the same answer inline
            if "payload" not in reply:
                self.signalling_errors.append(f"streamed start reply carried no answer: {reply}")
            else:
                try:
                    inline = self.seal.open("answer", reply["payload"])["answer"]["sdp"]
                except SealError as e:
                    inline = f"<{e}>"
                if inline != self.answer_sdp:
                    self.signalling_errors.append("the inline answer differs from the streamed one")
        else:
            reply = await post_task
            self.timings.t_http_200 = time.perf_counter()
            if "payload" not in reply:
                raise RuntimeError(f"inline start reply has no payload: {reply}")
            ans = self.seal.open("answer", reply["payload"])
            await self._apply_answer(ans)
            if self.mode in ("trickle", "both"):
                await self.trickle(send_done)
        await asyncio.wait_for(self.channel_open.wait(), open_timeout)

    trickle_delay: float = 0.0

    async def trickle(self, send_done: bool = True):
        if self.trickle_delay:
            await asyncio.sleep(self.trickle_delay)
        cands = [
            {"candidate": c, "sdpMid": self.mid, "sdpMLineIndex": self.mline_index}
            for c in self.local_candidates
        ]
        reply = await self.post("candidates", {"candidates": cands, "done": send_done})
        return reply

    async def _apply_answer(self, ans: dict):
        a = ans["answer"]
        if a.get("type") != "answer":
            raise RuntimeError(f"answer type {a.get('type')}")
        self.answer_sdp = a["sdp"]
        self.timings.t_answer = time.perf_counter()
        self.answer_open_first = bool(ans.get("open_first", False))
        if self.open_first and self.answer_open_first and self.first_conn is None:
            # section 6.4: connection 1 is the gateway's to open; no OPEN is sent for it
            self.first_conn = Conn(self, 1)
            self.conns[1] = self.first_conn
            self.next_id = max(self.next_id, 2)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=a["sdp"], type="answer"))
        self._answer_applied.set()

    async def _ws_consumer(self):
        q = self.sock.queue(self.conv)
        while True:
            t, f = await q.get()
            kind = f.get("kind")
            try:
                body = self.seal.open(kind, f["payload"])
            except SealError as e:
                self.signalling_errors.append(str(e))
                continue
            self.stream_log.append((t, kind, body if kind != "answer" else "<answer>"))
            if kind == "answer":
                if self._answer_applied.is_set():
                    self.signalling_errors.append("second streamed answer (ignored)")
                    continue
                await self._apply_answer(body)
            elif kind == "candidates":
                if not self._answer_applied.is_set():
                    self.signalling_errors.append("candidates before answer")
                for c in body.get("candidates", []):
                    self.remote_candidates.append(c)
                    await self._add_remote(c)
                if body.get("done"):
                    self.remote_done = True
                    try:
                        await self.pc.addIceCandidate(None)
                    except Exception as e:  # noqa: BLE001
                        self.signalling_errors.append(f"end-of-candidates: {e!r}")
            elif kind == "closed":
                self.closed_messages.append(body)
                self.closed_event.set()
            elif kind == "opened":
                self.opened_messages.append(body)
                c = self.conns.get(body.get("conn"))
                if c is not None and c is self.first_conn:
                    refused = body.get("refused")
                    if refused is None:
                        c.on_frame(OPENED, b"")
                    else:
                        c.on_frame(RESET, refused.encode())
            else:
                self.signalling_errors.append(f"unknown kind {kind}")

    async def _add_remote(self, c: dict):
        s = c["candidate"]
        if s.startswith("candidate:"):
            s = s[len("candidate:"):]
        if not s:
            return
        try:
            ice = candidate_from_sdp(s)
        except Exception as e:  # noqa: BLE001
            self.signalling_errors.append(f"cannot parse remote candidate {c}: {e!r}")
            return
        ice.sdpMid = c.get("sdpMid")
        ice.sdpMLineIndex = c.get("sdpMLineIndex")
        if ice.sdpMid is None and ice.sdpMLineIndex is None:
            ice.sdpMid = self.mid
        await self.pc.addIceCandidate(ice)

    # -- frames --------------------------------------------------------------
    def send_frame(self, data: bytes):
        if self.dc is None or self.dc.readyState != "open":
            raise ConnReset("channel not open")
        self.dc.send(data)

    async def drain(self, high: int = 1 << 20):
        # keep aiortc's send buffer bounded
        while self.dc.bufferedAmount > high:
            await asyncio.sleep(0.005)

    def _on_message(self, m):
        self.max_message = max(getattr(self, "max_message", 0), len(m))
        if isinstance(m, str):
            self.text_messages.append(m)
            return
        try:
            t, conn, body = parse_frame(m)
        except ValueError as e:
            self.unknown_frames.append(str(e))
            return
        if t == SHUTDOWN:
            self.shutdown_reason = body.decode("utf-8", "replace")
            self.shutdown_received.set()
            self._end_all(f"shutdown:{self.shutdown_reason}")
            return
        if t not in FRAME_NAMES:
            self.unknown_frames.append((t, conn, body))
            return
        c = self.conns.get(conn)
        if c is None:
            self.ignored_frames.append((FRAME_NAMES[t], conn, body[:40]))
            return
        c.on_frame(t, body)

    def _end_all(self, reason: str):
        for c in self.conns.values():
            if c.reset_reason is None:
                c.on_tube_end(reason)

    def open_conn(self, conn_id: Optional[int] = None, *, auto_window: bool = True,
                  reference_window: bool = False) -> Conn:
        cid = self.next_id if conn_id is None else conn_id
        self.next_id = max(self.next_id, cid + 1)
        c = Conn(self, cid, auto_window=auto_window)
        self.conns[cid] = c
        c.t_open_sent = time.perf_counter()
        self.send_frame(frame(OPEN, cid))
        if reference_window:
            c.grant(786_432)
        return c

    async def open_and_wait(self, **kw) -> Conn:
        c = self.open_conn(**kw)
        await asyncio.wait_for(c.opened, 15)
        if not self.timings.t_first_opened:
            self.timings.t_first_opened = c.t_opened
        return c

    # -- ending --------------------------------------------------------------
    async def shutdown(self, reason: str = "client_closed", *, wait_closed: float = 5.0):
        if self.dc is not None and self.dc.readyState == "open":
            self.t_shutdown_sent = time.perf_counter()
            self.send_frame(frame(SHUTDOWN, 0, reason.encode()))
            # let SCTP carry it before closing (the doc says the sender waits for the ack)
            t_end = time.monotonic() + 1.0
            while self.dc.bufferedAmount > 0 and time.monotonic() < t_end:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
        if self.streamed and wait_closed:
            try:
                await asyncio.wait_for(self.closed_event.wait(), wait_closed)
            except asyncio.TimeoutError:
                pass

    async def close_sealed(self, reason: str = "client_closed") -> dict:
        return await self.post("close", {"reason": reason})

    async def dispose(self):
        if self._ws_task:
            self._ws_task.cancel()
            await asyncio.gather(self._ws_task, return_exceptions=True)
        if self.pc:
            await self.pc.close()
