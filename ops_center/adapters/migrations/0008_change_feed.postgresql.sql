-- The store's change feed (docs/scale-out.md, H3): every change the live stream shows is
-- announced with NOTIFY on `smartward_feed` inside the transaction that writes it, so every
-- `ops serve` sharing this store (LISTEN) hears each committed change once, whichever process
-- wrote it. The payload is small JSON, kind + ids (`k`, `id`, and `e` / `a` / `i` / `s`) and
-- `n`, the change's number from one sequence, so every process gives the change the same
-- live-stream event id (a client resumes with Last-Event-ID on any of them); the listener
-- loads the rows (ops_center/service/change_feed.py). A replayed write that changes
-- nothing (an upsert of the same state, a timeline entry already stored: ON CONFLICT DO
-- NOTHING) announces nothing, as the service's own feed does not publish a replay.

CREATE SEQUENCE IF NOT EXISTS smartward_feed_seq;

CREATE OR REPLACE FUNCTION smartward_feed_incident_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('smartward_feed', json_build_object(
        'n', nextval('smartward_feed_seq'), 'k', 'incident', 'id', NEW.incident_id, 'e', NEW.id, 's', NEW.site)::text);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER smartward_feed_incident_event AFTER INSERT ON incident_events
    FOR EACH ROW EXECUTE FUNCTION smartward_feed_incident_event();

CREATE OR REPLACE FUNCTION smartward_feed_alert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    act text;
    rank_new integer := array_position(ARRAY['info', 'warning', 'critical', 'emergency'], NEW.severity);
BEGIN
    IF TG_OP = 'INSERT' THEN
        act := CASE WHEN NEW.state = 'cleared' THEN 'cleared' ELSE 'raised' END;
    ELSIF NEW.state = 'cleared' AND OLD.state <> 'cleared' THEN
        act := 'cleared';
    ELSIF NEW.state = 'active' AND OLD.state = 'cleared' THEN
        act := 'reopened';
    ELSIF NEW.state = 'active' AND rank_new
            > array_position(ARRAY['info', 'warning', 'critical', 'emergency'], OLD.severity) THEN
        act := 'escalated';
    ELSIF NEW.state = 'active' AND rank_new
            < array_position(ARRAY['info', 'warning', 'critical', 'emergency'], OLD.severity) THEN
        act := 'deescalated';
    END IF;
    IF act IS NOT NULL THEN
        PERFORM pg_notify('smartward_feed', json_build_object(
            'n', nextval('smartward_feed_seq'), 'k', 'alert', 'id', NEW.id, 'a', act, 'i', NEW.incident_id, 's', NEW.site)::text);
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER smartward_feed_alert AFTER INSERT OR UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION smartward_feed_alert();

CREATE OR REPLACE FUNCTION smartward_feed_gateway() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM NEW.state THEN
        PERFORM pg_notify('smartward_feed', json_build_object(
            'n', nextval('smartward_feed_seq'), 'k', 'gateway', 'id', NEW.gateway, 's', NEW.site)::text);
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER smartward_feed_gateway AFTER INSERT OR UPDATE ON gateway_status
    FOR EACH ROW EXECUTE FUNCTION smartward_feed_gateway();
