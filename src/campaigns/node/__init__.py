"""What runs inside an allocation: the worker, the local runner, and the file helpers
(atomic writes, checksums) that the manager side shares with them."""
