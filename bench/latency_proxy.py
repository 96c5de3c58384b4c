"""A TCP proxy that delays every chunk by a set time in each direction, keeping order: a
2 ms round trip without kernel modules (tc netem is not available here).

Two threads per direction, in blocking system calls that let go of the interpreter lock: one
receives and stamps each chunk, one sends it when it is due. The proxy must not be what
bounds throughput, only latency: an asyncio loop with a drain per chunk held one stream
to about 360 MB/s here."""
import collections
import socket
import threading
import time

CHUNK = 4 << 20


class LatencyProxy:
    def __init__(self, upstream_port, one_way_ms):
        self.upstream_port = upstream_port
        self.delay = one_way_ms / 1000
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = []
        self.lock = threading.Lock()
        self.pipes = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections += [client, server]
            for source, target in ((client, server), (server, client)):
                pipe = Pipe(source, target, self.delay)
                with self.lock:
                    self.pipes.append(pipe)

    @property
    def carried(self):
        """Bytes carried both ways on every connection so far: what workloads put on the wire."""
        with self.lock:
            return sum(pipe.carried for pipe in self.pipes)

    @property
    def cpu_seconds(self):
        """CPU time the relay's threads have used so far: what the proxy costs."""
        with self.lock:
            return sum(sum(pipe.cpu) for pipe in self.pipes)

    def cut(self):
        """Breaks every connection so far, as a network failure would; new ones still come."""
        with self.lock:
            cut, self.connections = self.connections, []
        for sock in cut:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def stop(self):
        self.listener.close()
        with self.lock:
            for sock in self.connections:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


class Pipe:
    """One direction: chunks leave `delay` after they arrived, in order."""

    def __init__(self, source, target, delay):
        self.source, self.target, self.delay = source, target, delay
        self.carried = 0
        # CPU seconds each of the two threads has used, as last seen by itself.
        self.cpu = [0.0, 0.0]
        self.queue = collections.deque()
        self.ready = threading.Condition()
        threading.Thread(target=self._receive, daemon=True).start()
        threading.Thread(target=self._deliver, daemon=True).start()

    def _receive(self):
        while True:
            try:
                chunk = self.source.recv(CHUNK)
            except OSError:
                chunk = b""
            with self.ready:
                self.carried += len(chunk)
                self.queue.append((time.monotonic() + self.delay, chunk))
                self.ready.notify()
            self.cpu[0] = time.thread_time()
            if not chunk:
                return

    def _deliver(self):
        while True:
            with self.ready:
                while not self.queue:
                    self.ready.wait()
                due, chunk = self.queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not chunk:
                    self.target.shutdown(socket.SHUT_WR)
                    return
                self.target.sendall(chunk)
            except OSError:
                return
            self.cpu[1] = time.thread_time()
