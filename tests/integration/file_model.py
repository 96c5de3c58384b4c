"""One file on a drive and its model in memory: every operation is done on both, and every
byte read back and the size after each step are checked against the model.

The fsx replay (test_integrity) and the property test (test_property) both drive it.
"""
import ctypes
import mmap
import os

PAGE = mmap.PAGESIZE


def pattern(tag, count):
    """Bytes that differ at every offset and from one operation to the next."""
    start = (tag * 7919) % 251
    return bytes((start + n + (n >> 8)) % 251 + 1 for n in range(count))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def map_page(fd, offset):
    """The page of the file at `offset`, read through a shared read-only map."""
    address = _libc.mmap(None, PAGE, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
    if address in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    try:
        return ctypes.string_at(address, PAGE)
    finally:
        _libc.munmap(address, PAGE)


class Descriptor:
    """One open file description, opened with `flags` (O_DIRECT, O_APPEND)."""

    def __init__(self, path, flags):
        self.flags = flags
        self.fd = os.open(path, os.O_RDWR | flags)

    @property
    def direct(self):
        return bool(self.flags & os.O_DIRECT)

    def close(self):
        os.close(self.fd)


class ModelFile:
    def __init__(self, path, log=None):
        self.path = path
        self.model = bytearray()
        self.log = log if log is not None else []
        self.tag = 0
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        os.close(fd)
        self.descriptors = [Descriptor(path, 0)]

    # bookkeeping

    def note(self, text):
        self.log.append(text)

    def fail(self, message):
        raise AssertionError(message + "\nsteps:\n  " + "\n  ".join(self.log[-40:]))

    def data(self, count):
        self.tag += 1
        return pattern(self.tag, count)

    def pick(self, which):
        return self.descriptors[which % len(self.descriptors)]

    def check_size(self, which=0):
        size = os.fstat(self.pick(which).fd).st_size
        if size != len(self.model):
            self.fail(f"size {size:#x}, expected {len(self.model):#x}")

    def compare(self, what, offset, got, expected):
        if got != expected:
            first = next((n for n in range(min(len(got), len(expected))) if got[n] != expected[n]),
                         min(len(got), len(expected)))
            self.fail(f"{what} at {offset:#x}+{len(expected):#x}: got {len(got):#x} bytes, "
                      f"first difference at {offset + first:#x}")

    def extend(self, end):
        if end > len(self.model):
            self.model += bytes(end - len(self.model))

    # descriptors

    def open(self, flags=0):
        self.note(f"open {'O_DIRECT ' if flags & os.O_DIRECT else ''}{'O_APPEND' if flags & os.O_APPEND else ''}")
        self.descriptors.append(Descriptor(self.path, flags))

    def close(self, which):
        if len(self.descriptors) > 1:
            self.note(f"close {which % len(self.descriptors)}")
            self.descriptors.pop(which % len(self.descriptors)).close()

    def close_open(self):
        """fsx's CLOSE/OPEN: every descriptor goes, the page cache is dropped, one plain
        descriptor comes back."""
        self.note("close_open")
        for descriptor in self.descriptors:
            descriptor.close()
        with open("/proc/sys/vm/drop_caches", "w") as control:
            control.write("3\n")
        self.descriptors = [Descriptor(self.path, 0)]

    def close_all(self):
        for descriptor in self.descriptors:
            descriptor.close()
        self.descriptors = []

    # data

    def read(self, offset, count, which=0):
        descriptor = self.pick(which)
        self.note(f"read {offset:#x} {count:#x} on {which % len(self.descriptors)}{' direct' if descriptor.direct else ''}")
        expected = bytes(self.model[offset:offset + count])
        if descriptor.direct:
            buffer = mmap.mmap(-1, max(count, 1))
            done = os.preadv(descriptor.fd, [memoryview(buffer)[:count]], offset)
            got = bytes(buffer[:done])
        else:
            got = os.pread(descriptor.fd, count, offset)
        self.compare("read", offset, got, expected)

    def write(self, offset, count, which=0):
        descriptor = self.pick(which)
        data = self.data(count)
        appending = bool(descriptor.flags & os.O_APPEND)
        if appending:
            offset = len(self.model)
        self.note(f"write {offset:#x} {count:#x} on {which % len(self.descriptors)}"
                  f"{' direct' if descriptor.direct else ''}{' append' if appending else ''}")
        if descriptor.direct:
            buffer = mmap.mmap(-1, max(count, 1))
            buffer[:count] = data
            done = os.pwritev(descriptor.fd, [memoryview(buffer)[:count]], offset)
        elif appending:
            done = os.write(descriptor.fd, data)
        else:
            done = os.pwrite(descriptor.fd, data, offset)
        if done != count:
            self.fail(f"short write {done:#x} of {count:#x}")
        self.extend(offset + count)
        self.model[offset:offset + count] = data

    def replace_elsewhere(self, size, put):
        """Another client replaces the whole file (`put(data)`): what every descriptor of the
        drive reads from then on."""
        data = self.data(size)
        self.note(f"replaced by another client: {size:#x} bytes")
        put(data)
        self.model = bytearray(data)

    def truncate(self, size, which=0):
        self.note(f"truncate {size:#x} (from {len(self.model):#x})")
        os.ftruncate(self.pick(which).fd, size)
        if size < len(self.model):
            del self.model[size:]
        else:
            self.extend(size)

    def map_read(self, offset, count, which=0):
        """fsx's MAPREAD: the pages from the one holding `offset`; past EOF the rest of the
        last page must read as zeros."""
        self.note(f"mapread {offset:#x} {count:#x}")
        if len(self.model) == 0 or count == 0:
            return
        offset = min(offset, len(self.model) - 1)
        count = min(count, len(self.model) - offset)
        start = offset & ~(PAGE - 1)
        with mmap.mmap(self.pick(which).fd, offset + count - start, prot=mmap.PROT_READ, offset=start) as mapped:
            self.compare("mapread", offset, mapped[offset - start:offset - start + count],
                         bytes(self.model[offset:offset + count]))
        # The rest of the page holding EOF reads as zeros (fsx's "Mapped Read: non-zero data
        # past EOF"); Python's mmap will not map past EOF, libc's will.
        if len(self.model) % PAGE:
            last = len(self.model) & ~(PAGE - 1)
            tail = map_page(self.pick(which).fd, last)[len(self.model) - last:]
            if tail != bytes(len(tail)):
                self.fail(f"non-zero data past EOF {len(self.model):#x}")

    def map_write(self, offset, count, which=0):
        """fsx's MAPWRITE: a write past EOF extends the file with ftruncate first."""
        self.note(f"mapwrite {offset:#x} {count:#x}")
        if count == 0:
            return
        fd = self.pick(which).fd
        if offset + count > len(self.model):
            os.ftruncate(fd, offset + count)
            self.extend(offset + count)
        data = self.data(count)
        start = offset & ~(PAGE - 1)
        with mmap.mmap(fd, offset + count - start, offset=start) as mapped:
            mapped[offset - start:offset - start + count] = data
            mapped.flush()
        self.model[offset:offset + count] = data

    def copy_range(self, source, count, target, which=0):
        """copy_file_range within the file, as fsx does (no overlap)."""
        count = min(count, max(0, len(self.model) - source))
        if count == 0 or (source < target + count and target < source + count):
            return
        # copy_file_range refuses a target opened O_APPEND (EBADF).
        plain = [descriptor for descriptor in self.descriptors if not descriptor.flags & os.O_APPEND]
        if not plain:
            return
        self.note(f"copy_range {source:#x} {count:#x} to {target:#x}")
        fd = plain[which % len(plain)].fd
        done = 0
        while done < count:
            step = os.copy_file_range(fd, fd, count - done, source + done, target + done)
            if step == 0:
                self.fail(f"copy_file_range returned 0 after {done:#x} of {count:#x}")
            done += step
        data = bytes(self.model[source:source + count])
        self.extend(target + count)
        self.model[target:target + count] = data

    def fsync(self, which=0):
        self.note("fsync")
        os.fsync(self.pick(which).fd)

    def check_all(self):
        """Reads the whole file back through a fresh descriptor."""
        with open(self.path, "rb") as reader:
            self.compare("whole file", 0, reader.read(), bytes(self.model))


def replay_fsx(path, operations):
    """Replays an fsx operations file (`--record-ops`): `op offset length size [close_open]`."""
    subject = ModelFile(path)
    try:
        for line in operations.strip().splitlines():
            fields = line.split()
            if fields[0] == "skip":
                # A CLOSE/OPEN still follows an operation fsx could not do.
                if "close_open" in fields:
                    subject.close_open()
                continue
            numbers = [int(field, 16) for field in fields[1:] if field.startswith("0x")]
            op = fields[0]
            if op == "read":
                subject.read(numbers[0], numbers[1])
            elif op == "write":
                subject.write(numbers[0], numbers[1])
            elif op == "mapread":
                subject.map_read(numbers[0], numbers[1])
            elif op == "mapwrite":
                subject.map_write(numbers[0], numbers[1])
            elif op == "truncate":
                subject.truncate(numbers[1])
            elif op == "copy_range":
                subject.copy_range(numbers[0], numbers[1], numbers[2])
            else:
                raise ValueError(f"unknown fsx operation {op}")
            subject.check_size()
            if "close_open" in fields:
                subject.close_open()
        subject.check_all()
    finally:
        subject.close_all()
