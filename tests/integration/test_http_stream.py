"""The HTTP layer streams: a 1 GiB chunked upload and a 256 MiB chunked
download go through a server process whose peak RSS (VmHWM) must stay under
64 MiB, with every byte checked (zlib CRC-32)."""
import os
import socket
import subprocess
import zlib

import pytest

from conftest import BUILD, vm_hwm_kib

SINK = os.path.join(BUILD, "tests", "unit", "http_sink")
LIMIT_KIB = 64 * 1024


@pytest.fixture
def sink():
    p = subprocess.Popen([SINK, "0"], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith("listening "), line
    port = int(line.split()[1])
    yield p, port
    p.terminate()
    p.wait(10)


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, "connection closed before response"
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0]
                 .split(b":")[1])
    while len(body) < length:
        body += s.recv(65536)
    return head, body


def upload(port, total, query=""):
    block = os.urandom(1 << 20)
    crc = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(f"PUT /sink{query} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  .encode())
        sent = 0
        while sent < total:
            n = min(len(block), total - sent)
            piece = block[:n]
            s.sendall(b"%x\r\n" % n + piece + b"\r\n")
            crc = zlib.crc32(piece, crc)
            sent += n
        s.sendall(b"0\r\n\r\n")
        head, body = read_response(s)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body.decode() == "bytes=%d crc32=%08x\n" % (total, crc)


def test_1gib_chunked_upload_streams_in_bounded_memory(sink):
    p, port = sink
    upload(port, 1 << 30)
    hwm = vm_hwm_kib(p.pid)
    print(f"http_sink VmHWM after 1 GiB upload: {hwm} KiB")
    assert hwm < LIMIT_KIB


def test_paused_handler_pushes_back_on_the_sender(sink):
    # The handler pauses on its first chunk for 2 s. While it is paused the
    # server must stop reading, so the client can only fill the kernel's
    # socket buffers; then the upload completes intact.
    p, port = sink
    block = os.urandom(1 << 20)
    frame = b"%x\r\n" % len(block) + block + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"PUT /sink?stall_ms=2000 HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        s.settimeout(0.5)
        frames, off, accepted = 0, 0, 0
        while accepted < (256 << 20):
            try:
                n = s.send(frame[off:])
            except socket.timeout:
                break  # the server stopped reading: backpressure reached us
            accepted += n
            off += n
            if off == len(frame):
                frames, off = frames + 1, 0
        print(f"accepted while the handler was paused: {accepted >> 20} MiB")
        # kernel buffers (a few MiB each way) + the 256 KiB read high water mark
        assert accepted < (32 << 20)
        s.settimeout(30)
        s.sendall(frame[off:])  # finish the frame in progress
        frames += 1
        for _ in range(4):  # and a few more after the resume
            s.sendall(frame)
            frames += 1
        s.sendall(b"0\r\n\r\n")
        head, body = read_response(s)
    sent = frames * len(block)
    crc = 0
    for _ in range(frames):
        crc = zlib.crc32(block, crc)
    assert head.startswith(b"HTTP/1.1 200")
    assert body.decode() == "bytes=%d crc32=%08x\n" % (sent, crc)
    assert vm_hwm_kib(p.pid) < LIMIT_KIB


def test_256mib_chunked_download_streams(sink):
    p, port = sink
    n = 256 << 20
    got = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(f"GET /stream?n={n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        buf = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
    assert got > n  # body plus chunk framing and headers
    assert vm_hwm_kib(p.pid) < LIMIT_KIB


@pytest.mark.parametrize("raw", [
    b"PUT /sink HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"PUT /sink HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 30 + b"\r\n",
])
def test_bad_chunks_get_400_and_server_keeps_serving(sink, raw):
    p, port = sink
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    assert out.startswith(b"HTTP/1.1 400 "), out
    # the partial upload's handler was released, and new requests still work
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    assert p.poll() is None
