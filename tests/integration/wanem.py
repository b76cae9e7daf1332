"""Python client for wanem, the user-space WAN emulator (tests/multisite/wanem).

Starts a wanem process, waits for its "ready" line and speaks the control
protocol (one command per line, one "ok key=value ..." or "err <message>"
reply per line; see tests/multisite/wanem/README.md).

    from wanem import Wanem
    with Wanem() as w:
        host, port = w.add_link("a-b", target=("127.0.0.1", 9001), delay=50)
        w.partition("a-b")
        w.heal("a-b")
        print(w.stats("a-b")["ab.bytes_out"])

The binary is $MERIDIAN_BUILD_DIR/tests/multisite/wanem/wanem, with
MERIDIAN_BUILD_DIR defaulting to "build" at the repository root (a relative
value is taken relative to the repository root).
"""

import os
import selectors
import signal
import socket
import subprocess
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class WanemError(Exception):
    """wanem answered "err ..." (the message is the text after "err ")."""


def build_dir():
    d = os.environ.get("MERIDIAN_BUILD_DIR", "build")
    return d if os.path.isabs(d) else os.path.join(REPO_ROOT, d)


def binary_path():
    return os.path.join(build_dir(), "tests", "multisite", "wanem", "wanem")


def _convert(v):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def parse_reply(line):
    """Turns "ok a=1 b=x" into {"a": 1, "b": "x"}; raises WanemError on "err"."""
    if line.startswith("err"):
        raise WanemError(line[4:])
    if not line.startswith("ok"):
        raise WanemError("unexpected reply: %r" % line)
    out = {}
    for tok in line[2:].split():
        k, sep, v = tok.partition("=")
        out[k] = _convert(v) if sep else True
    return out


def _addr(a):
    if isinstance(a, tuple):
        host, port = a
        return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    return a


def _split_addr(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def _settings(kw):
    return " ".join("%s=%s" % (k, v) for k, v in kw.items())


class Wanem:
    """One wanem process and one control connection to it.

    links: iterable of --link specs ("NAME,LISTEN,TARGET[,k=v...]").
    log: a path or file object for wanem's stderr (its logfmt log), or None.
    """

    def __init__(self, links=(), seed=None, log=None, log_level="info", binary=None,
                 ready_timeout=10.0, control_timeout=10.0):
        self.binary = binary or binary_path()
        if not os.access(self.binary, os.X_OK):
            raise FileNotFoundError(
                "wanem binary not found at %s; build it (cmake --build <dir> --target wanem) "
                "and set MERIDIAN_BUILD_DIR" % self.binary)
        args = [self.binary, "--log-level", log_level]
        for spec in links:
            args += ["--link", spec]
        if seed is not None:
            args += ["--seed", str(seed)]
        self._log_file = None
        if isinstance(log, str):
            self._log_file = open(log, "ab")
            stderr = self._log_file
        else:
            stderr = log if log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr,
                                     stdin=subprocess.DEVNULL)
        self.links = {}
        self._lock = threading.Lock()  # one request and its reply at a time
        try:
            self.control = self._wait_ready(ready_timeout)
            self._sock = socket.create_connection(self.control, timeout=control_timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._rfile = self._sock.makefile("rb")
        except BaseException:
            self._kill()
            raise

    @property
    def pid(self):
        return self.proc.pid

    def _wait_ready(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError("wanem did not print 'ready' within %.1fs" % timeout)
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise RuntimeError("wanem exited during start-up (status %s)"
                                       % self.proc.wait(timeout=5))
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    fields = parse_reply("ok " + line.decode().split(" ", 1)[1])
                    if line.startswith(b"link "):
                        self.links[fields["link"]] = _split_addr(fields["listen"])
                    elif line.startswith(b"ready "):
                        return _split_addr(fields["control"])
        finally:
            sel.close()

    # ---- raw protocol -----------------------------------------------------

    def raw(self, line):
        """Sends one line, returns the reply line without the newline."""
        # several threads share the control connection (the soak's fault
        # scheduler and its flapping links): without the lock one could read
        # the other's reply, and the other wait out the control timeout
        with self._lock:
            self._sock.sendall(line.encode() + b"\n")
            reply = self._rfile.readline()
        if not reply:
            raise ConnectionError("wanem closed the control connection")
        return reply.decode().rstrip("\r\n")

    def command(self, line):
        return parse_reply(self.raw(line))

    # ---- commands ---------------------------------------------------------

    def add_link(self, name, target, listen="127.0.0.1:0", **settings):
        """Adds a link; returns the (host, port) it listens on."""
        r = self.command("link add %s %s %s %s" % (name, _addr(listen), _addr(target),
                                                   _settings(settings)))
        self.links[name] = _split_addr(r["listen"])
        return self.links[name]

    def del_link(self, name):
        self.command("link del %s" % name)
        self.links.pop(name, None)

    def set(self, name, dir="both", **settings):
        """Changes delay/jitter (ms), rate/burst/qmax (bytes) for dir ab, ba or both.

        corrupt=N (bytes, or "off") arms a one-shot fault: after N more bytes
        are released in that direction, the next byte is XORed with 0xff."""
        return self.command("set %s dir=%s %s" % (name, dir, _settings(settings)))

    def partition(self, name, dir="both"):
        return self.command("partition %s dir=%s" % (name, dir))

    def heal(self, name, dir="both"):
        return self.command("heal %s dir=%s" % (name, dir))

    def reset(self, name):
        """Kills every connection of the link with RST; returns how many."""
        return self.command("reset %s" % name)["killed"]

    def stats(self, name):
        return self.command("stats %s" % name)

    def list(self):
        names = self.command("list")["links"]
        return [n for n in str(names).split(",") if n]

    # ---- process ----------------------------------------------------------

    def alive(self):
        return self.proc.poll() is None

    def vm_hwm_kib(self):
        """Peak resident set size of wanem, from /proc/<pid>/status."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc/%d/status" % self.proc.pid)

    def close(self, timeout=10.0):
        """SIGTERM, then waits; returns the exit status."""
        try:
            self._rfile.close()
            self._sock.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self.proc.stdout.close()
        if self._log_file:
            self._log_file.close()
        return self.proc.returncode

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
