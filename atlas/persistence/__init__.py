"""ATLAS persistence: the AOF, snapshots, recovery, the AOF checker, backups.

files.py     the data directory: manifest (the commit point), atomic writes, the lock
aof.py       the append-only file: RESP records, writing with pwrite, scanning and checking
snapshot.py  the reusable snapshot API: serialize the keyspace at a point, load it back
recovery.py  start-up: snapshot + AOF replay, torn tails cut, corruption refused
engine.py    the running node: group commit, fsync modes, snapshots as AOF rewrites, disk errors
commands.py  SAVE BGSAVE BGREWRITEAOF LASTSAVE
backup.py    consistent backups of a running node, and restores
metrics.py   atlas_aof_fsync_seconds, atlas_snapshot_duration_seconds
"""
