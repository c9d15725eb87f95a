"""What the tests share and are not tests themselves: a private PostgreSQL server, the
pure-Python model of the record format (``oracle``), journal editing behind a store's back,
worker-process scripts and the workflows they serve, and small test helpers."""
