-- Pilots see the metrics (unit, kind, register maximum) of their own devices.
CREATE OR REPLACE VIEW tenant_api.device_metrics WITH (security_barrier) AS
    SELECT d.tenant, m.* FROM public.device_metrics m JOIN public.devices d ON d.id = m.device_id
    WHERE d.tenant = (SELECT t.tenant FROM public.tenant_roles t WHERE t.role = current_user);
GRANT SELECT ON tenant_api.device_metrics TO pilotstream_tenant, pilotstream_cityops;
