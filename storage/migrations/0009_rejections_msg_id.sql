-- The publisher's message id (MQTT 5 user property msg-id) of a gateway dead letter, so a refused
-- message can be matched with what its sender logged; '' when the publisher sent none and for
-- processor rejections (those name their reading in the payload: device_id, metric, ts_ms).
ALTER TABLE rejections ADD COLUMN IF NOT EXISTS msg_id text NOT NULL DEFAULT '';

-- the pilots' view shows it too (the column list of a view is fixed when it is created)
CREATE OR REPLACE VIEW tenant_api.rejections WITH (security_barrier) AS
    SELECT j.* FROM public.rejections j
    WHERE j.tenant = (SELECT t.tenant FROM public.tenant_roles t WHERE t.role = current_user);
