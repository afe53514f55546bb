"""Raft consensus: a pure core, its storage, transport and driver, with no knowledge of ATLAS."""
