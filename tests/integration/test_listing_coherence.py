"""A listing never brings back what a write through the drive replaced: files written and
closed read back whole while another thread lists and stats their directory."""
import os
import random
import threading


def test_a_read_after_close_sees_every_byte_while_the_directory_is_listed(drive):
    stop = threading.Event()
    wrong = []

    def writer_reader(name):
        rng = random.Random(name)
        known = {}
        for _ in range(300):
            path = drive / f"{name}-{rng.randrange(4)}.bin"
            if rng.random() < 0.5:
                data = rng.randbytes(rng.choice([1, 4096, 65536, 1 << 20]))
                with open(path, "wb") as f:
                    f.write(data)
                known[path] = data
            elif path in known:
                got = path.read_bytes()
                if got != known[path]:
                    wrong.append((path.name, len(got), len(known[path])))

    def lister():
        while not stop.is_set():
            for entry in os.scandir(drive):
                try:
                    entry.stat(follow_symlinks=False)
                except OSError:
                    pass

    listing = threading.Thread(target=lister)
    workers = [threading.Thread(target=writer_reader, args=(name,)) for name in ("a", "b")]
    listing.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    listing.join()
    assert wrong == [], f"reads that missed what was written and closed: {wrong[:5]}"
