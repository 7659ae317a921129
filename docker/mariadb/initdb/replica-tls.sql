-- Run by the mariadb image's entrypoint on the replica's first start (/docker-entrypoint-initdb.d, an empty
-- datadir only), after its CHANGE MASTER TO (MARIADB_MASTER_HOST): the replica connects to the primary over
-- TLS and verifies its certificate (host name included) against the CA, as the local stack's replica does,
-- and hears from it at least every second (slave_net_timeout 4 s: a silent primary is noticed in 4 s).
-- An existing replica: STOP SLAVE; this statement; START SLAVE.
CHANGE MASTER TO
  MASTER_SSL = 1,
  MASTER_SSL_CA = '/run/secrets/tls-ca',
  MASTER_SSL_VERIFY_SERVER_CERT = 1,
  MASTER_HEARTBEAT_PERIOD = 1;
