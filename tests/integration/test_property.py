"""A model-based property test: random sequences of opens, closes, reads, writes, truncates,
mapped reads and writes, copy_file_range, fsync, O_DIRECT and O_APPEND on several
descriptors of one file at once, against the model in file_model.py, which checks every
byte read and the size after each step; on a local and an SMB share.

`make test` runs a fixed, bounded set (NETUSE_PROPERTY_SEEDS, each with
NETUSE_PROPERTY_EXAMPLES sequences of up to NETUSE_PROPERTY_STEPS rules; the Makefile
says how many); `make torture` runs more seeds, longer. NETUSE_PROPERTY_SHRINK=1 lets
Hypothesis shrink a failure (slow on real mounts); without it a failure prints the rules
that led to it and the model's last steps.
"""
import itertools
import os
import time

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as with_seed
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from file_model import ModelFile

SEEDS = [int(seed) for seed in os.environ.get("NETUSE_PROPERTY_SEEDS", "1 2 3 4").split()]
EXAMPLES = int(os.environ.get("NETUSE_PROPERTY_EXAMPLES", "30"))
STEPS = int(os.environ.get("NETUSE_PROPERTY_STEPS", "50"))
# Large enough that sequential reads start the SMB read-ahead (batches of 2 MiB and up).
LARGEST = 6 << 20
names = itertools.count()

offsets = st.integers(0, LARGEST - 1)
counts = st.integers(1, 256 << 10)
descriptors = st.integers(0, 7)


def machine_for(directory, other=None):
    """`other(name, data)`, when given, is another SMB client replacing a file of the share."""
    class FileMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.file = ModelFile(directory / f"p{next(names)}")

        def teardown(self):
            if os.environ.get("NETUSE_PROPERTY_VERBOSE"):
                print(f"{len(self.file.log)} steps: " + ", ".join(step.split()[0] for step in self.file.log))
            try:
                self.file.check_all()
            finally:
                self.file.close_all()
                os.unlink(self.file.path)

        @invariant()
        def size_matches(self):
            self.file.check_size()

        @precondition(lambda self: len(self.file.descriptors) < 4)
        @rule(kind=st.sampled_from(["plain", "direct", "append"]))
        def open(self, kind):
            self.file.open({"plain": 0, "direct": os.O_DIRECT, "append": os.O_APPEND}[kind])

        @rule(which=descriptors)
        def close(self, which):
            self.file.close(which)

        @rule()
        def close_and_reopen(self):
            self.file.close_open()

        @rule(offset=offsets, count=counts, which=descriptors)
        def read(self, offset, count, which):
            self.file.read(offset, count, which)

        @rule(start=st.integers(0, LARGEST), chunk=st.sampled_from([128 << 10, 512 << 10, 1 << 20]),
              times=st.integers(2, 6), which=descriptors)
        def read_sequentially(self, start, chunk, times, which):
            for n in range(times):
                self.file.read(start + n * chunk, chunk, which)

        @rule(offset=offsets, count=counts, which=descriptors)
        def write(self, offset, count, which):
            self.file.write(offset, min(count, LARGEST - offset), which)

        @rule(size=st.integers(0, LARGEST), which=descriptors)
        def truncate(self, size, which):
            self.file.truncate(size, which)

        @rule(offset=offsets, count=counts)
        def map_read(self, offset, count):
            self.file.map_read(offset, count)

        @rule(offset=offsets, count=counts)
        def map_write(self, offset, count):
            self.file.map_write(offset, min(count, LARGEST - offset))

        @rule(source=offsets, count=counts, destination=offsets)
        def copy_range(self, source, count, destination):
            self.file.copy_range(source, count, destination)

        @rule(which=descriptors)
        def fsync(self, which):
            self.file.fsync(which)

        @precondition(lambda self: other is not None)
        @rule(size=st.integers(0, 256 << 10))
        def replaced_by_another_client(self, size):
            self.file.replace_elsewhere(size, lambda data: other(self.file.path.name, data))

    return FileMachine


def run(test, seed):
    settings_ = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
                         phases=[Phase.explicit, Phase.generate]
                         + ([Phase.shrink] if os.environ.get("NETUSE_PROPERTY_SHRINK") else []),
                         suppress_health_check=list(HealthCheck))
    # A seed for a state machine goes on the test Hypothesis builds for it.
    from hypothesis.stateful import get_state_machine_test
    with_seed(seed)(get_state_machine_test(test, settings=settings_))()


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_another_clients_writes_match_the_model(daemon, user_share, base, seed):
    """The same sequences on an SMB drive (native engine, leases), with another SMB client
    (smbclient) replacing the file between steps: every read after it, through descriptors
    held open too, must show the other client's bytes, and its write must not be lost to the
    drive's data written before it. Where the drive holds a read lease the break makes this
    so; where its own opens of the file broke one another's leases (a writer's write breaks
    the readers'), only `actimeo` does, so the drive is mapped with actimeo=0 for the
    step after to be checked at once. A read-lease break needs no answer, so the server does
    not wait for it: the step after the other client's waits a moment for it to arrive."""
    drive = daemon.use("q", user_share, "-o", "engine=native", "-o", "actimeo=0")
    staged = base / "staged"

    def other(name, data):
        staged.write_bytes(data)
        user_share.other_client(f"put {staged} {name}", check=True)
        time.sleep(0.05)

    run(machine_for(drive, other), seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_file_operations_match_the_model(drive, seed):
    test = machine_for(drive)
    run(test, seed)
