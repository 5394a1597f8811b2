"""etcd's space quota (issue 13, part 4): a NOSPACE alarm is a clear 507, never a 500 or a
false success, and reads go on."""

from __future__ import annotations

from tests._helpers.procs import start_etcd


def test_a_full_etcd_answers_507_with_the_reason_and_reads_go_on(proxy_factory, tmp_path):
    quota = 8 * 1024 * 1024
    with start_etcd(tmp_path / "etcd", extra_args=["--quota-backend-bytes", str(quota)]) as etcd:
        proxy = proxy_factory(etcd_url=etcd.url)
        token = proxy.create_token("alpha")
        value = b"x" * (1024 * 1024)
        statuses = []
        with proxy.client(token) as c:
            first = proxy.envelope("/alpha/full/0", b"readable")
            assert c.put("/v1/kv/alpha/full/0", content=first).status_code == 200
            for i in range(1, 40):
                path = f"/alpha/full/{i}"
                r = c.put(f"/v1/kv{path}", content=proxy.envelope(path, value))
                statuses.append(r.status_code)
                if r.status_code != 200:
                    break
            assert statuses[-1] == 507, statuses
            body = r.json()["error"]
            assert body["code"] == "insufficient_storage"
            assert "out of space (NOSPACE alarm)" in body["message"]
            assert set(statuses[:-1]) == {200}  # nothing else: no 500, no false success
            assert c.get("/v1/kv/alpha/full/0").status_code == 200  # reads go on
        print(f"\netcd with an {quota // 2**20} MiB quota: {len(statuses) - 1} writes of 1 MiB "
              "accepted, then 507 insufficient_storage")
