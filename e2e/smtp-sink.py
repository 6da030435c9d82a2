#!/usr/bin/env python3
"""A real SMTP server for Cutover's tests (aiosmtpd), listening on 127.0.0.1 only.

    python3 e2e/smtp-sink.py --port P --maildir DIR [--delay-ms N]
        [--starttls-cert CERT.pem --starttls-key KEY.pem] [--auth USER:PASS] [--require-auth]

Every accepted message is stored as one file in DIR/new (Maildir: written to DIR/tmp, then
renamed) BEFORE the server replies 250, and one JSON line is appended to DIR/log.jsonl:

    {"mailFrom": "...", "rcptTos": ["..."], "messageId": "<...>", "at": "2027-01-01T00:00:00.000000Z",
     "file": "new/<name>", "size": 1234}

so a test can count envelope recipients (a Cc address is an envelope recipient too) and find
each message's file. With --delay-ms the server waits that long AFTER storing and BEFORE
replying, so a test can kill the client or the sink while the 250 is pending (the message is
then on disk although the client never heard the reply).

--starttls-cert/--starttls-key   offer STARTTLS with this PEM certificate chain and key.
--auth USER:PASS                 offer AUTH PLAIN and LOGIN and accept only these credentials
                                 (over TLS when STARTTLS is configured; in plain text otherwise,
                                 which is fine on loopback). Without --auth no AUTH is offered.
--require-auth                   refuse MAIL before a successful AUTH (530); with STARTTLS
                                 configured, also refuse every command but EHLO/NOOP/QUIT before
                                 STARTTLS. Needs --auth.
--port 0                         pick a free port.

Prints "ready PORT" on stdout (flushed) once it listens; exits 0 on SIGTERM or SIGINT.
Errors go to stderr. Needs Python 3.8+ and aiosmtpd (Debian: python3-aiosmtpd).
"""

import argparse
import asyncio
import datetime
import email.parser
import email.policy
import hmac
import itertools
import json
import logging
import os
import signal
import socket
import ssl
import sys
import time

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.stderr.write(
        f"smtp-sink: cannot import aiosmtpd ({e}); install it: scripts/install-deps.sh "
        "(Debian package python3-aiosmtpd)\n"
    )
    sys.exit(3)

# A message larger than this is refused (552); also announced as SIZE in EHLO.
DATA_SIZE_LIMIT = 32 * 1024 * 1024


class Sink:
    """aiosmtpd handler: store each message in the Maildir, log it, then (maybe) wait."""

    def __init__(self, maildir, delay_ms, offer_auth, reject_rcpt=None):
        self.maildir = maildir
        self.delay = delay_ms / 1000.0
        self.offer_auth = offer_auth
        self.reject_rcpt = reject_rcpt.lower() if reject_rcpt else None
        self.counter = itertools.count(1)
        self.host = socket.gethostname().replace("/", "_").replace(":", "_") or "sink"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if not self.offer_auth:
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject_rcpt and self.reject_rcpt in address.lower():
            return "550 5.1.1 <%s>: recipient address rejected: no such user" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self.counter)}.{self.host}"
        tmp = os.path.join(self.maildir, "tmp", name)
        new = os.path.join(self.maildir, "new", name)
        with open(tmp, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, new)

        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(content)
        message_id = headers.get("Message-ID")
        record = {
            "mailFrom": envelope.mail_from,
            "rcptTos": list(envelope.rcpt_tos),
            "messageId": message_id.strip() if message_id else None,
            "at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "file": f"new/{name}",
            "size": len(content),
        }
        with open(os.path.join(self.maildir, "log.jsonl"), "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
            log.flush()
            os.fsync(log.fileno())

        if self.delay > 0:
            await asyncio.sleep(self.delay)
        return f"250 2.0.0 Ok: stored as {name}"


def make_authenticator(user, password):
    want_user = user.encode("utf-8")
    want_pass = password.encode("utf-8")

    def authenticate(server, session, envelope, mechanism, auth_data):
        if mechanism not in ("PLAIN", "LOGIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok_user = hmac.compare_digest(auth_data.login or b"", want_user)
        ok_pass = hmac.compare_digest(auth_data.password or b"", want_pass)
        return AuthResult(success=ok_user and ok_pass, handled=False)

    return authenticate


def parse_args(argv):
    p = argparse.ArgumentParser(description="SMTP sink for Cutover's tests (aiosmtpd, 127.0.0.1 only)")
    p.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: pick a free one)")
    p.add_argument("--maildir", required=True, help="Maildir folder (created with cur/ new/ tmp/)")
    p.add_argument("--delay-ms", type=int, default=0, help="wait after storing, before replying 250")
    p.add_argument("--starttls-cert", help="PEM certificate (chain) to offer STARTTLS with")
    p.add_argument("--starttls-key", help="PEM private key for --starttls-cert")
    p.add_argument("--auth", metavar="USER:PASS", help="offer AUTH PLAIN/LOGIN with these credentials")
    p.add_argument("--require-auth", action="store_true", help="refuse MAIL before AUTH (and before STARTTLS)")
    p.add_argument("--reject-rcpt", metavar="TEXT", help="answer 550 to every recipient whose address contains TEXT")
    a = p.parse_args(argv)
    if not 0 <= a.port <= 65535:
        p.error(f"--port {a.port} is out of range 0-65535")
    if a.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    if bool(a.starttls_cert) != bool(a.starttls_key):
        p.error("--starttls-cert and --starttls-key go together")
    if a.auth is not None and ":" not in a.auth:
        p.error("--auth must be USER:PASS")
    if a.require_auth and a.auth is None:
        p.error("--require-auth needs --auth USER:PASS")
    return a


async def serve(args):
    maildir = os.path.abspath(args.maildir)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)

    tls_context = None
    if args.starttls_cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.check_hostname = False
        tls_context.verify_mode = ssl.CERT_NONE
        tls_context.load_cert_chain(args.starttls_cert, args.starttls_key)

    authenticator = None
    if args.auth is not None:
        user, password = args.auth.split(":", 1)
        authenticator = make_authenticator(user, password)

    handler = Sink(maildir, args.delay_ms, offer_auth=authenticator is not None, reject_rcpt=args.reject_rcpt)
    loop = asyncio.get_running_loop()

    def factory():
        kwargs = dict(
            hostname="smtp-sink.cutover.test",
            data_size_limit=DATA_SIZE_LIMIT,
            decode_data=False,
            tls_context=tls_context,
            require_starttls=bool(tls_context) and args.require_auth,
            auth_required=args.require_auth,
            # With a certificate, AUTH only after STARTTLS; without one, plain text AUTH
            # (loopback only, for tests).
            auth_require_tls=tls_context is not None,
            loop=loop,
        )
        if authenticator is not None:
            kwargs["authenticator"] = authenticator
        return SMTP(handler, **kwargs)

    server = await loop.create_server(factory, host="127.0.0.1", port=args.port)
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    sys.stdout.write(f"ready {port}\n")
    sys.stdout.flush()
    await stop.wait()
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), timeout=5)
    except asyncio.TimeoutError:
        pass


class _DropDeprecationNoise(logging.Filter):
    # aiosmtpd 1.4 warns about its own use of Session.login_data on every successful AUTH.
    def filter(self, record):
        return "login_data is deprecated" not in str(record.msg)


def main(argv):
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="smtp-sink: %(levelname)s %(message)s")
    logging.getLogger("mail.log").addFilter(_DropDeprecationNoise())
    try:
        asyncio.run(serve(args))
    except OSError as e:
        sys.stderr.write(f"smtp-sink: cannot listen on 127.0.0.1:{args.port}: {e}\n")
        return 1
    except ssl.SSLError as e:
        sys.stderr.write(f"smtp-sink: cannot load --starttls-cert/--starttls-key: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
