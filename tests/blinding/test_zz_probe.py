import time, collections
from tests.blinding.test_blinded_users_never_see_an_arm import *
from tests.blinding.test_blinded_users_never_see_an_arm import _shape

def test_probe(client, asc_du):
    for name in ["monitor.du", "datamanager"]:
        client.force_login(user(name))
        t=time.monotonic()
        r = crawl(client)
        print(name, len(r.pages), time.monotonic()-t)
        c = collections.Counter(_shape(u.split("?")[0]) for u in r.statuses)
        for k,v in c.most_common(40): print(v, k)
        print(collections.Counter(r.statuses.values()))
