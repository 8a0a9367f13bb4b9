use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The indexes of the jobs table, created on the partitioned table so that every partition has
/// them (and those of the table before partitioning are taken over, not built again).
const INDEXES: [(&str, &str); 5] = [
    ("idx_jobs_tenant_id", "tenant, id"),
    ("idx_jobs_tenant_status_id", "tenant, status, id"),
    ("idx_jobs_tenant_type_id", "tenant, job_type, id"),
    ("idx_jobs_tenant_idempotency_key", "tenant, idempotency_key"),
    ("idx_jobs_status_updated_at", "status, updated_at"),
];

/// On PostgreSQL the jobs table becomes partitioned by id range: UUIDv7 ids begin with the time
/// they were made, so each partition holds the jobs of one day, and retention drops a day whose
/// jobs all ended long enough ago instead of deleting its rows (the store makes the days ahead).
/// The jobs there are become one partition, up to the end of the day of the migration, taken
/// over without a copy; a default partition holds whatever no day does. SQLite keeps one table.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let mut sql = String::from(
            "ALTER TABLE jobs RENAME TO jobs_before_partitions;
             ALTER INDEX jobs_pkey RENAME TO jobs_before_partitions_pkey;\n",
        );
        for (name, _) in INDEXES {
            sql += &format!("ALTER INDEX {name} RENAME TO {name}_before_partitions;\n");
        }
        sql +=
            "CREATE TABLE jobs (LIKE jobs_before_partitions INCLUDING DEFAULTS, PRIMARY KEY (id))
                PARTITION BY RANGE (id);\n";
        for (name, columns) in INDEXES {
            sql += &format!("CREATE INDEX {name} ON jobs ({columns});\n");
        }
        // The first moment of the next day (UTC), as the smallest UUIDv7 of that millisecond.
        sql += "DO $$
                DECLARE
                    millis text := lpad(to_hex((extract(epoch FROM
                        date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day')
                        * 1000)::bigint), 12, '0');
                    bound uuid := (substr(millis, 1, 8) || '-' || substr(millis, 9, 4)
                        || '-0000-0000-000000000000')::uuid;
                BEGIN
                    EXECUTE format('ALTER TABLE jobs ATTACH PARTITION jobs_before_partitions
                                    FOR VALUES FROM (MINVALUE) TO (%L)', bound);
                END $$;
                CREATE TABLE jobs_default PARTITION OF jobs DEFAULT;";
        manager
            .get_connection()
            .execute_unprepared(&sql)
            .await
            .map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let mut sql = String::from(
            "CREATE TABLE jobs_unpartitioned (LIKE jobs INCLUDING DEFAULTS);
             INSERT INTO jobs_unpartitioned SELECT * FROM jobs;
             DROP TABLE jobs;
             ALTER TABLE jobs_unpartitioned RENAME TO jobs;
             ALTER TABLE jobs ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);\n",
        );
        for (name, columns) in INDEXES {
            sql += &format!("CREATE INDEX {name} ON jobs ({columns});\n");
        }
        manager
            .get_connection()
            .execute_unprepared(&sql)
            .await
            .map(drop)
    }
}
