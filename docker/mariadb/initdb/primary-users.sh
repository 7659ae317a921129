# Sourced by the mariadb image's entrypoint on the primary's first start (/docker-entrypoint-initdb.d, an
# empty datadir only), after it created the database and the replication user. The users the local stack
# makes too (scripts/stack/mariadb.ts), with passwords from the environment (docker-compose.yml):
#   flashsale          the app: data only (SELECT, INSERT, UPDATE, DELETE), no DDL
#   flashsale_migrate  the schema owner: migrations (MYSQL_MIGRATION_URL)
#   exporter           mysqld_exporter (docker-compose.yml, docker/prometheus/): server status, replication
#   flashsale_admin    the failover manager (src/db-failover/): read-only on/off, KILL, promotion, CHANGE MASTER
# The app's user may also read replication status (SLAVE MONITOR): a node tells a replica that follows the
# primary from one that does not (src/storage/mysql.ts).
# Every account must connect with TLS (REQUIRE SSL, besides the server's require_secure_transport).
# These statements are binlogged, so the replica gets the same users. An existing datadir is not touched:
# run the same statements there by hand (docker/README.md "TLS and credentials").
# shellcheck shell=bash disable=SC2154
flashsale_app_password=$(docker_sql_escape_string_literal "${FLASHSALE_APP_PASSWORD:?}")
flashsale_migration_password=$(docker_sql_escape_string_literal "${FLASHSALE_MIGRATION_PASSWORD:?}")
flashsale_exporter_password=$(docker_sql_escape_string_literal "${FLASHSALE_EXPORTER_PASSWORD:?}")
flashsale_admin_password=$(docker_sql_escape_string_literal "${FLASHSALE_ADMIN_PASSWORD:?}")
docker_process_sql --binary-mode <<-EOSQL
	CREATE USER IF NOT EXISTS 'flashsale'@'%' IDENTIFIED BY '${flashsale_app_password}';
	CREATE USER IF NOT EXISTS 'flashsale_migrate'@'%' IDENTIFIED BY '${flashsale_migration_password}';
	ALTER USER 'flashsale'@'%', 'flashsale_migrate'@'%', '${MARIADB_REPLICATION_USER}'@'%' REQUIRE SSL;
	GRANT SELECT, INSERT, UPDATE, DELETE ON \`flashsale\`.* TO 'flashsale'@'%';
	GRANT SLAVE MONITOR ON *.* TO 'flashsale'@'%';
	GRANT ALL PRIVILEGES ON \`flashsale\`.* TO 'flashsale_migrate'@'%';
	CREATE USER IF NOT EXISTS 'exporter'@'%' IDENTIFIED BY '${flashsale_exporter_password}' WITH MAX_USER_CONNECTIONS 3;
	ALTER USER 'exporter'@'%' REQUIRE SSL;
	GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR, SELECT ON *.* TO 'exporter'@'%';
	CREATE USER IF NOT EXISTS 'flashsale_admin'@'%' IDENTIFIED BY '${flashsale_admin_password}';
	ALTER USER 'flashsale_admin'@'%' REQUIRE SSL;
	GRANT RELOAD, PROCESS, SUPER, BINLOG MONITOR, CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, SLAVE MONITOR ON *.* TO 'flashsale_admin'@'%';
EOSQL
unset flashsale_app_password flashsale_migration_password flashsale_exporter_password flashsale_admin_password
