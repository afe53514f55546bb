"""Interaction tests in the style of etcd's raft testdata: a script of commands and the expected trace.

A file is a sequence of blocks; each block is one command line, a `----` line, and the expected
output up to the next blank line (or `ok` when there is none). `#` lines are comments. Commands:

    add-nodes 3 voters=(1,2,3) [learners=(4)] [prevote=false] [checkquorum=false] [max-msg-bytes=N]
              [inflight=N] [chunk=N] [catch-up=N] [mutation=NAME]
                                   nodes 1..N; voters and learners start bootstrapped
    campaign 1                     start an election on node 1
    propose 1 data [client=c1 seq=1]
    propose-conf-change 1 add-learner|add-voter|remove 4
    read-index 1 ctx               transfer-leadership 1 2
    tick-heartbeat 1 [n]           n heartbeat intervals      tick-election 1   one election timeout
    process-ready 1 [2 ...]        persist, apply and advance one Ready; its messages are queued
    deliver-msgs [1 2 ...] [drop=3,4]   deliver queued messages (to the nodes given, else all)
    stabilize [1 2 ...]            process Readies and deliver messages until nothing moves
    partition 1 | 2 3              messages sent between the groups are lost; `heal` ends it
    crash 1 / restart 1            lose everything not persisted / start again from storage
    compact 1 index                snapshot node 1's applied state at `index`
    status 1 / raft-log 1 / applied 1

`python -m raft.interaction FILE...` prints the trace; tests compare it, and with RAFT_REWRITE=1
they rewrite the expected output in place (review the diff before committing).
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from raft.core import (
    ConfChange,
    ConfChangeOp,
    Config,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Mutation,
    RaftError,
    RawNode,
    Ready,
    bootstrap_state,
)
from raft.core.codec import decode_conf_entry
from raft.storage import MemoryStorage


def describe_entry(e: Entry) -> str:
    text = f"{e.term}/{e.index} {e.kind.name}"
    if e.kind == EntryKind.CONF_CHANGE:
        conf, change = decode_conf_entry(e.data)
        return f"{text} {change.op.name} {change.node_id}: voters={list(conf.voters)} learners={list(conf.learners)}"
    if e.data:
        text += f" {e.data.decode(errors='replace')!r}"
    if e.client_id:
        text += f" {e.client_id}#{e.seq}"
    return text


def describe_message(m: Message) -> str:
    head = f"{m.src}->{m.dst} {m.type.name} term={m.term}"
    t = m.type
    if t in (MessageType.APPEND, MessageType.PROPOSE):
        entries = ", ".join(describe_entry(e) for e in m.entries)
        return f"{head} log={m.log_term}/{m.index} commit={m.commit} entries=[{entries}]"
    if t == MessageType.APPEND_RESP:
        if m.reject:
            return f"{head} reject index={m.index} hint={m.log_term}/{m.reject_hint}"
        return f"{head} index={m.index}"
    if t in (MessageType.VOTE, MessageType.PRE_VOTE):
        return f"{head} log={m.log_term}/{m.index}" + (" force" if m.force else "")
    if t in (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
        return f"{head} {'rejected' if m.reject else 'granted'}"
    if t == MessageType.HEARTBEAT:
        return f"{head} commit={m.commit} read={m.read_seq}"
    if t == MessageType.HEARTBEAT_RESP:
        return f"{head} read={m.read_seq}"
    if t in (MessageType.SNAPSHOT, MessageType.SNAPSHOT_RESP):
        snap = f"{m.snapshot.term}/{m.snapshot.index}" if m.snapshot else "-"
        extra = f" len={len(m.data)}" if t == MessageType.SNAPSHOT else ""
        flags = (" done" if m.done else "") + (" reject" if m.reject else "")
        return f"{head} snap={snap} offset={m.offset}{extra}{flags}"
    if t in (MessageType.READ_INDEX, MessageType.READ_INDEX_RESP):
        return f"{head} index={m.index} ctx={m.context.decode(errors='replace')!r}"
    return head


def describe_ready(rd: Ready) -> list[str]:
    lines = [f"Ready must_sync={str(rd.must_sync).lower()}"]
    if rd.soft_state is not None:
        lines.append(f"soft: leader={rd.soft_state.leader} role={rd.soft_state.role.name}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        lines.append(f"hard: term={hs.term} vote={hs.vote} commit={hs.commit}")
    if rd.snapshot is not None:
        meta = rd.snapshot.meta
        lines.append(f"snapshot: {meta.term}/{meta.index} voters={list(meta.conf.voters)} len={len(rd.snapshot.data)}")
    if rd.entries:
        lines.append("entries:")
        lines.extend(f"  {describe_entry(e)}" for e in rd.entries)
    if rd.committed_entries:
        lines.append("committed:")
        lines.extend(f"  {describe_entry(e)}" for e in rd.committed_entries)
    if rd.read_states:
        lines.append("read states:")
        lines.extend(f"  index={r.index} ctx={r.context.decode(errors='replace')!r}" for r in rd.read_states)
    if rd.messages:
        lines.append("messages:")
        lines.extend(f"  {describe_message(m)}" for m in rd.messages)
    return lines


def _ids(text: str) -> list[int]:
    return [int(x) for x in text.strip("()").replace(",", " ").split()]


@dataclass
class _Node:
    config: Config
    storage: MemoryStorage
    core: RawNode | None
    applied: list[Entry] = field(default_factory=list)


class InteractionEnv:
    """A cluster driven one command at a time, with every Ready and message written out."""

    def __init__(self) -> None:
        self.nodes: dict[int, _Node] = {}
        self.queue: list[Message] = []
        self.blocked: set[tuple[int, int]] = set()

    def run(self, line: str) -> str:
        words = line.split()
        command, args = words[0], words[1:]
        handler = getattr(self, "cmd_" + command.replace("-", "_"), None)
        if handler is None:
            return f"error: unknown command {command!r}"
        try:
            out: list[str] = handler(args)
        except RaftError as exc:
            out = [f"{type(exc).__name__}: {exc}"]
        return "\n".join(out) if out else "ok"

    # --- set-up --------------------------------------------------------------------------------

    def cmd_add_nodes(self, args: list[str]) -> list[str]:
        count = int(args[0])
        opts = dict(a.split("=", 1) for a in args[1:])
        voters = _ids(opts.get("voters", "()")) or list(range(1, count + 1))
        learners = _ids(opts.get("learners", "()"))
        for node_id in range(1, count + 1):
            config = Config(
                id=node_id,
                election_ticks=int(opts.get("election", "10")),
                heartbeat_ticks=int(opts.get("heartbeat", "1")),
                pre_vote=opts.get("prevote", "true") == "true",
                check_quorum=opts.get("checkquorum", "true") == "true",
                max_msg_bytes=int(opts.get("max-msg-bytes", str(1 << 20))),
                max_inflight_msgs=int(opts.get("inflight", "256")),
                snapshot_chunk_bytes=int(opts.get("chunk", str(1 << 20))),
                learner_catch_up_entries=int(opts.get("catch-up", "100")),
                mutation=Mutation(opts.get("mutation", "none")),
            )
            storage = MemoryStorage()
            if node_id in voters or node_id in learners:
                storage.initialize(bootstrap_state(voters, learners))
            self.nodes[node_id] = _Node(config, storage, None)
            self._start(node_id)
        return []

    def _start(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.core = RawNode(node.config, rng=random.Random(node_id), state=node.storage.load())
        snapshot = node.storage.snapshot()
        node.applied = [] if snapshot is None else list(_decode_applied(snapshot.data))

    def _core(self, node_id: int) -> RawNode:
        core = self.nodes[node_id].core
        if core is None:
            raise RaftError(f"node {node_id} is down")
        return core

    # --- input ---------------------------------------------------------------------------------

    def cmd_campaign(self, args: list[str]) -> list[str]:
        self._core(int(args[0])).campaign()
        return []

    def cmd_propose(self, args: list[str]) -> list[str]:
        opts = dict(a.split("=", 1) for a in args[2:])
        index = self._core(int(args[0])).propose(
            args[1].encode(), client_id=opts.get("client", ""), seq=int(opts.get("seq", "0"))
        )
        return [] if index is not None else ["forwarded to the leader"]

    def cmd_propose_conf_change(self, args: list[str]) -> list[str]:
        op = {
            "add-learner": ConfChangeOp.ADD_LEARNER,
            "add-voter": ConfChangeOp.ADD_VOTER,
            "remove": ConfChangeOp.REMOVE,
        }
        self._core(int(args[0])).propose_conf_change(ConfChange(op[args[1]], int(args[2])))
        return []

    def cmd_read_index(self, args: list[str]) -> list[str]:
        self._core(int(args[0])).read_index(args[1].encode())
        return []

    def cmd_transfer_leadership(self, args: list[str]) -> list[str]:
        self._core(int(args[0])).transfer_leadership(int(args[1]))
        return []

    def cmd_tick_heartbeat(self, args: list[str]) -> list[str]:
        core = self._core(int(args[0]))
        for _ in range(int(args[1]) if len(args) > 1 else 1):
            for _ in range(core.raft.cfg.heartbeat_ticks):
                core.tick()
        return []

    def cmd_tick_election(self, args: list[str]) -> list[str]:
        core = self._core(int(args[0]))
        r = core.raft
        ticks = r.cfg.election_ticks if r.role.name == "LEADER" else r.randomized_timeout - r.election_elapsed
        for _ in range(max(ticks, 1)):
            core.tick()
        return []

    def cmd_compact(self, args: list[str]) -> list[str]:
        node = self.nodes[int(args[0])]
        index = int(args[1])
        snapshot = self._core(int(args[0])).compact(index, _encode_applied(node.applied, index))
        node.storage.save_snapshot(snapshot)
        node.storage.compact(index)
        return [f"snapshot {snapshot.meta.term}/{snapshot.meta.index} len={len(snapshot.data)}"]

    def cmd_crash(self, args: list[str]) -> list[str]:
        node_id = int(args[0])
        self.nodes[node_id].core = None
        self.queue = [m for m in self.queue if m.dst != node_id]
        return []

    def cmd_restart(self, args: list[str]) -> list[str]:
        self._start(int(args[0]))
        return []

    def cmd_partition(self, args: list[str]) -> list[str]:
        text = " ".join(args)
        left, right = (set(_ids(part)) for part in text.split("|"))
        self.blocked = {(a, b) for a in left for b in right} | {(b, a) for a in left for b in right}
        return []

    def cmd_heal(self, args: list[str]) -> list[str]:
        self.blocked = set()
        return []

    # --- the Ready cycle -----------------------------------------------------------------------

    def _process_ready(self, node_id: int) -> list[str]:
        node = self.nodes[node_id]
        core = self._core(node_id)
        rd = core.ready()
        node.storage.persist(rd)
        lines = describe_ready(rd)
        self.queue.extend(m for m in rd.messages if (m.src, m.dst) not in self.blocked)  # lost in a partition
        if rd.snapshot is not None:
            node.applied = list(_decode_applied(rd.snapshot.data))
        node.applied.extend(rd.committed_entries)
        core.advance(rd)
        return lines

    def cmd_process_ready(self, args: list[str]) -> list[str]:
        out: list[str] = []
        for node_id in [int(a) for a in args]:
            if len(args) > 1:
                out.append(f"> {node_id} handling Ready")
                out.extend(f"  {line}" for line in self._process_ready(node_id))
            else:
                out.extend(self._process_ready(node_id))
        return out

    def _deliver(self, targets: set[int], drop: set[int]) -> list[str]:
        out: list[str] = []
        remaining: list[Message] = []
        delivered: dict[int, list[str]] = {}
        for m in self.queue:
            if m.dst not in targets:
                remaining.append(m)
                continue
            lines = delivered.setdefault(m.dst, [])
            if m.dst in drop or (m.src, m.dst) in self.blocked:
                lines.append(f"{describe_message(m)} (dropped)")
                continue
            lines.append(describe_message(m))
            core = self.nodes[m.dst].core
            if core is not None:
                core.step(m)
        self.queue = remaining
        for node_id in sorted(delivered):
            out.append(f"> {node_id} receiving messages")
            out.extend(f"  {line}" for line in delivered[node_id])
        return out

    def cmd_deliver_msgs(self, args: list[str]) -> list[str]:
        drop: set[int] = set()
        targets: set[int] = set()
        for arg in args:
            if arg.startswith("drop="):
                drop |= set(_ids(arg[5:]))
            else:
                targets.add(int(arg))
        return self._deliver(targets or set(self.nodes) | drop, drop)

    def cmd_stabilize(self, args: list[str]) -> list[str]:
        ids = [int(a) for a in args] or sorted(self.nodes)
        out: list[str] = []
        for _ in range(1000):
            moved = False
            for node_id in ids:
                core = self.nodes[node_id].core
                if core is not None and core.has_ready():
                    moved = True
                    out.append(f"> {node_id} handling Ready")
                    out.extend(f"  {line}" for line in self._process_ready(node_id))
            if any(m.dst in ids for m in self.queue):
                moved = True
                out.extend(self._deliver(set(ids), set()))
            if not moved:
                return out
        raise RaftError("stabilize did not settle within 1000 rounds")

    # --- inspection ----------------------------------------------------------------------------

    def cmd_status(self, args: list[str]) -> list[str]:
        s = self._core(int(args[0])).status()
        lines = [
            f"{s.role.name} term={s.term} vote={s.vote} leader={s.leader} commit={s.commit} applied={s.applied} "
            f"first={s.first_index} last={s.last_index} voters={list(s.conf.voters)} learners={list(s.conf.learners)}"
        ]
        lines.extend(f"{node}: {text}" for node, text in s.progress.items())
        return lines

    def cmd_raft_log(self, args: list[str]) -> list[str]:
        log = self._core(int(args[0])).raft.log
        lines = [f"snapshot {log.snapshot.term}/{log.snapshot.index}"] if log.snapshot.index else []
        return lines + [describe_entry(e) for e in log.entries]

    def cmd_applied(self, args: list[str]) -> list[str]:
        return [describe_entry(e) for e in self.nodes[int(args[0])].applied]


def _encode_applied(applied: list[Entry], index: int) -> bytes:
    """The test state machine's snapshot: the data of the applied entries, one per line."""
    kept = [e for e in applied if e.index <= index and e.data and e.kind == EntryKind.NORMAL]
    return b"\n".join(b"%d %d %s" % (e.term, e.index, e.data) for e in kept)


def _decode_applied(data: bytes) -> list[Entry]:
    entries = []
    for line in data.split(b"\n"):
        if line:
            term, index, payload = line.split(b" ", 2)
            entries.append(Entry(int(term), int(index), data=payload))
    return entries


# --- the file format --------------------------------------------------------------------------


@dataclass
class Block:
    prefix: list[str]  # comments and blank lines before the command
    command: str
    expected: str
    line: int


def parse(text: str) -> tuple[list[Block], list[str]]:
    """Blocks, and the trailing comment lines after the last one."""
    lines = text.split("\n")
    blocks: list[Block] = []
    prefix: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            prefix.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"line {i + 1}: command {line!r} is not followed by ----")
        out: list[str] = []
        j = i + 2
        while j < len(lines) and lines[j].strip():
            out.append(lines[j])
            j += 1
        blocks.append(Block(prefix, line, "\n".join(out), i + 1))
        prefix = []
        i = j
    return blocks, prefix


def render(blocks: list[Block], outputs: list[str], trailer: list[str]) -> str:
    parts: list[str] = []
    for block, output in zip(blocks, outputs, strict=True):
        parts.extend(block.prefix)
        parts.extend([block.command, "----", output])
    parts.extend(trailer)
    return "\n".join(parts)


def run_file(path: Path) -> tuple[list[Block], list[str], list[str]]:
    """Run every command of a file; returns its blocks, the actual outputs, and the trailer."""
    blocks, trailer = parse(path.read_text())
    env = InteractionEnv()
    return blocks, [env.run(block.command) for block in blocks], trailer


def main(argv: list[str]) -> int:
    for name in argv:
        blocks, outputs, trailer = run_file(Path(name))
        sys.stdout.write(render(blocks, outputs, trailer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
