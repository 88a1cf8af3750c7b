"""A platform of the previous version, whose registry is etcd's v2 API,
upgraded to this checkout by running setup-all-in-one.sh again, under
steady GET+POST load (issue 17): mfbench-upgrade's measurement with a
lighter load."""
import os

import mfbench_upgrade
from mfplatform import (
    checkout_db_prefix,
    drop_test_databases,
    mftest_database_settings,
)
from private_platform import PrivatePlatform


def test_a_v2_registry_platform_upgrades_without_a_failed_request(tmp_path):
    old_root = mfbench_upgrade.unpack(mfbench_upgrade.PREVIOUS_VERSION,
                                      tmp_path / 'previous')
    home = tmp_path / 'home'
    home.mkdir()
    prefix = checkout_db_prefix('mfup')
    platform = PrivatePlatform.on_free_ports(home, prefix, 'mfup', {
        'REDIS': os.environ.get('TEST_REDIS', '127.0.0.1:6379'),
        **mftest_database_settings(),
        **mfbench_upgrade.private_wheelhouse(tmp_path)})
    try:
        figures = mfbench_upgrade.upgrade_under_load(
            platform, old_root, clients=4, progress=lambda message: None)
    finally:
        platform.remove()
        drop_test_databases(prefix)
    assert figures['upgrade_ok'], figures['upgrade_output']
    assert figures['requests'] > 100
    assert figures['failed'] == 0, figures['failures']
    assert figures['posted'] > 10
    assert figures['lost'] == 0
    assert figures['users_kept'] and figures['messages_kept']
    assert figures['secrets_kept']
    # Revoked in v2 before the upgrade, refused by the v3 services after.
    assert figures['revoked_token_refused']
    assert figures['every_instance_replaced']
    assert figures['etcd_without_v2']
    assert figures['instances_on_leases']
    assert figures['registered_as_recorded']
