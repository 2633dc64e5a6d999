-- Window results, their daily rollup, emission factors and baseline models.
CREATE TABLE IF NOT EXISTS window_results (
    bucket_start      timestamptz NOT NULL,  -- window start, UTC
    width_s           integer NOT NULL CHECK (width_s > 0),  -- 900 or 3600
    tenant            text COLLATE "C" NOT NULL,
    device_id         text COLLATE "C" NOT NULL,
    metric            text COLLATE "C" NOT NULL,
    actual            float8 NOT NULL,  -- measured, canonical unit
    baseline          float8 NOT NULL,  -- predicted counterfactual, canonical unit
    delta             float8 NOT NULL,  -- baseline - actual (positive = avoided)
    factor            float8 NOT NULL,  -- kgCO2e per canonical unit
    avoided_co2e_kg   float8 NOT NULL,  -- delta * factor
    coverage          float8 NOT NULL CHECK (coverage BETWEEN 0 AND 1),
    baseline_model_id text NOT NULL,
    factor_id         text NOT NULL,
    revision          integer NOT NULL DEFAULT 1,  -- +1 each time the values change
    updated_at        timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('window_results', 'bucket_start', chunk_time_interval => interval '7 days',
                         create_default_indexes => false, if_not_exists => true);
CREATE UNIQUE INDEX IF NOT EXISTS window_results_key
    ON window_results (device_id, metric, width_s, bucket_start);
CREATE INDEX IF NOT EXISTS window_results_tenant ON window_results (tenant, bucket_start DESC);

-- Daily rollup per device in the city's local day, maintained by the writer in the same transaction
-- as the window results (a continuous aggregate cannot bucket each city in its own time zone).
CREATE TABLE IF NOT EXISTS results_daily (
    day             date NOT NULL,  -- local date in the pilot's city
    width_s         integer NOT NULL,
    tenant          text NOT NULL,
    device_id       text NOT NULL,
    metric          text NOT NULL,
    actual          float8 NOT NULL,
    baseline        float8 NOT NULL,
    delta           float8 NOT NULL,
    avoided_co2e_kg float8 NOT NULL,
    windows         integer NOT NULL,  -- how many windows the day holds
    coverage        float8 NOT NULL,   -- mean coverage of those windows
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, metric, width_s, day)
);
CREATE INDEX IF NOT EXISTS results_daily_tenant ON results_daily (tenant, day);

CREATE TABLE IF NOT EXISTS emission_factors (
    id         text PRIMARY KEY,
    scope      text NOT NULL,  -- grid:FR, mode:car_combustion, heat:natural_gas...
    unit       text NOT NULL,  -- kgCO2e/kWh, kgCO2e/pkm, kgCO2e/vkm
    value      float8 NOT NULL CHECK (value >= 0),
    basis      text NOT NULL,  -- lifecycle, direct, gross calorific value...
    source     text NOT NULL,
    year       integer NOT NULL,
    valid_from timestamptz NOT NULL,
    valid_to   timestamptz CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX IF NOT EXISTS emission_factors_scope ON emission_factors (scope, valid_from);

CREATE TABLE IF NOT EXISTS baselines (
    model_id     text PRIMARY KEY,
    tenant       text NOT NULL,
    device_id    text,             -- NULL: a pilot-level model
    metric       text NOT NULL,
    method       text NOT NULL,    -- caltrack_daily, caltrack_hourly, time_of_week_counts...
    parameters   jsonb NOT NULL DEFAULT '{}'::jsonb,
    fit_metrics  jsonb NOT NULL DEFAULT '{}'::jsonb,  -- cvrmse_pct, nmbe_pct, r2_adj, n...
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL CHECK (period_end > period_start),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS baselines_tenant ON baselines (tenant, metric);
