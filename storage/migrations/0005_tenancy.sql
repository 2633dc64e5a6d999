-- Roles and tenant isolation.
-- Tenants never get the hypertables: row-level security is bypassed by owners and is not applied
-- to TimescaleDB's chunk tables (schema _timescaledb_internal). Each pilot role reads through the
-- security_barrier views of schema tenant_api, owned by the schema owner, which keep only the rows
-- of the tenant mapped to current_user in tenant_roles. Per-pilot login roles are created by
-- storage/roles.py from the registry (roles are cluster-wide, the mapping is per database).
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pilotstream_ingest', 'pilotstream_cityops', 'pilotstream_tenant'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created concurrently by a migration of another database
            END;
        END IF;
    END LOOP;
END
$$;

CREATE TABLE IF NOT EXISTS tenant_roles (
    role   name PRIMARY KEY,  -- a login role of one pilot
    tenant text NOT NULL REFERENCES pilots (tenant)
);

CREATE SCHEMA IF NOT EXISTS tenant_api;

CREATE OR REPLACE VIEW tenant_api.pilots WITH (security_barrier) AS
    SELECT p.tenant, p.city, p.lot, p.description, p.params FROM public.pilots p
    WHERE p.tenant = (SELECT t.tenant FROM public.tenant_roles t WHERE t.role = current_user);

CREATE OR REPLACE VIEW tenant_api.cities WITH (security_barrier) AS
    SELECT c.* FROM public.cities c
    WHERE c.id = (SELECT p.city FROM public.pilots p JOIN public.tenant_roles t
                  ON t.tenant = p.tenant WHERE t.role = current_user);

CREATE OR REPLACE VIEW tenant_api.devices WITH (security_barrier) AS
    SELECT d.* FROM public.devices d
    WHERE d.tenant = (SELECT t.tenant FROM public.tenant_roles t WHERE t.role = current_user);

CREATE OR REPLACE VIEW tenant_api.interventions WITH (security_barrier) AS
    SELECT i.* FROM public.interventions i
    WHERE i.tenant = (SELECT t.tenant FROM public.tenant_roles t WHERE t.role = current_user);

CREATE OR REPLACE VIEW tenant_api.readings WITH (security_barrier) AS
    SELECT r.* FROM public.readings r
    WHERE r.tenant = (SELECT t.tenant FROM public.tenant_roles t WHERE t.role = current_user);

CREATE OR REPLACE VIEW tenant_api.window_results WITH (security_barrier) AS
    SELECT w.* FROM public.window_results w
    WHERE w.tenant = (SELECT t.tenant FROM public.tenant_roles t WHERE t.role = current_user);

CREATE OR REPLACE VIEW tenant_api.results_daily WITH (security_barrier) AS
    SELECT d.* FROM public.results_daily d
    WHERE d.tenant = (SELECT t.tenant FROM public.tenant_roles t WHERE t.role = current_user);

CREATE OR REPLACE VIEW tenant_api.rejections WITH (security_barrier) AS
    SELECT j.* FROM public.rejections j
    WHERE j.tenant = (SELECT t.tenant FROM public.tenant_roles t WHERE t.role = current_user);

CREATE OR REPLACE VIEW tenant_api.baselines WITH (security_barrier) AS
    SELECT b.* FROM public.baselines b
    WHERE b.tenant = (SELECT t.tenant FROM public.tenant_roles t WHERE t.role = current_user);

-- Published data, the same for everyone.
CREATE OR REPLACE VIEW tenant_api.emission_factors AS SELECT * FROM public.emission_factors;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA tenant_api TO pilotstream_tenant, pilotstream_cityops;
GRANT SELECT ON ALL TABLES IN SCHEMA tenant_api TO pilotstream_tenant, pilotstream_cityops;

-- City operations read everything (grants on hypertables propagate to their chunks).
GRANT SELECT ON ALL TABLES IN SCHEMA public TO pilotstream_cityops;

-- The ingest writer: readings, results, dead letters, offsets; reads the registry.
GRANT SELECT ON cities, pilots, devices, device_metrics, emission_factors, baselines
    TO pilotstream_ingest;
GRANT SELECT, INSERT, UPDATE ON readings, window_results, results_daily, rejections,
    consumer_offsets TO pilotstream_ingest;
GRANT USAGE ON SEQUENCE consumer_generation_seq TO pilotstream_ingest;
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO pilotstream_ingest', current_database());
END
$$;
