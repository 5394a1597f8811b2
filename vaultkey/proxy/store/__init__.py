"""The proxy's storage: a :class:`~vaultkey.proxy.store.base.KVStore` protocol and its
implementations (etcd for production, memory for fast route tests)."""
