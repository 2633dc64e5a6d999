-- Tables that later migrations create are readable by city operations without a new GRANT
-- (applies to objects created by the role that runs the migrations).
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO pilotstream_cityops;
