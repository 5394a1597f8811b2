"""Development tooling (private): the throwaway CA and the etcd process helper used by
``vaultkey dev``, the tests and the scripts. Never imported by the proxy or the SDK."""
