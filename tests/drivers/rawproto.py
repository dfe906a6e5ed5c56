"""Protocol messages in orders no driver sends, for tests of how the gateway counts batches.

`Raw` takes over the socket of a psycopg connection that has logged in (so the driver does
the authentication) and from then on writes frames and reads answers itself."""

import os
import socket
import struct

import psycopg


def frame(tag, body=b""):
    return tag + struct.pack("!I", len(body) + 4) + body


def _z(s):
    return (s.encode() if isinstance(s, str) else s) + b"\0"


def parse(name, text):
    return frame(b"P", _z(name) + _z(text) + struct.pack("!H", 0))


def bind(portal, statement):
    return frame(b"B", _z(portal) + _z(statement) + struct.pack("!HHH", 0, 0, 0))


def execute(portal="", max_rows=0):
    return frame(b"E", _z(portal) + struct.pack("!i", max_rows))


def close(kind, name):
    return frame(b"C", kind + _z(name))


def query(text):
    return frame(b"Q", _z(text))


SYNC = frame(b"S")
COPY_DONE = frame(b"c")


class Raw:
    def __init__(self, url):
        self.conn = psycopg.connect(url, sslmode="disable", autocommit=True)
        self.sock = socket.socket(fileno=os.dup(self.conn.pgconn.socket))
        self.sock.settimeout(10)
        self.buf = b""

    def close(self):
        self.sock.close()
        self.conn.close()

    def send(self, *frames):
        self.sock.sendall(b"".join(frames))

    def message(self):
        while len(self.buf) < 5 or len(self.buf) < 1 + struct.unpack("!I", self.buf[1:5])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self.buf += chunk
        n = 1 + struct.unpack("!I", self.buf[1:5])[0]
        tag, body, self.buf = self.buf[:1], self.buf[5:n], self.buf[n:]
        return tag, body

    def until(self, tag):
        """Answers through the next message with `tag` (b"Z": ReadyForQuery)."""
        got = []
        while True:
            t, body = self.message()
            got.append((t, body))
            if t == tag:
                return got

    def ready(self, n=1):
        got = []
        for _ in range(n):
            got += self.until(b"Z")
        return got


def errors(answers):
    """The message of each ErrorResponse among `answers`."""
    out = []
    for t, body in answers:
        if t == b"E":
            fields = dict((f[:1], f[1:]) for f in body.split(b"\0") if f)
            out.append(fields.get(b"M", b"").decode())
    return out


def values(answers):
    """The first column of each DataRow, as text."""
    out = []
    for t, body in answers:
        if t == b"D":
            (n,) = struct.unpack("!i", body[2:6])
            out.append(body[6 : 6 + n].decode())
    return out
