"""``cnnx bench``: every format a model ships as, measured in fresh processes (``cnnx.bench.worker``).

Empty on purpose: ``python -m cnnx.bench.worker`` must load nothing but what its format needs."""
