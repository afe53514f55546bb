"""PostgreSQL only: NOTIFY helios_jobs (jobs.wakeup.CHANNEL, payload: the queue) when jobs become
PENDING, so that idle workers LISTENing wake at once instead of at their next poll. Notifications are transactional: a
job enqueued in a transaction wakes workers when that transaction commits, not before."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION jobs_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queue_name text;
BEGIN
    -- One statement may insert thousands of jobs: one notification per queue, not per row.
    FOR queue_name IN SELECT DISTINCT queue FROM inserted_jobs LOOP
        PERFORM pg_notify('helios_jobs', queue_name);
    END LOOP;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION jobs_notify_requeued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('helios_jobs', NEW.queue);
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_job_notify_inserted AFTER INSERT ON jobs_job
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_inserted();

-- Retries, expired leases and retries from DEAD: jobs that go back to PENDING.
CREATE TRIGGER jobs_job_notify_requeued AFTER UPDATE OF status ON jobs_job
    FOR EACH ROW WHEN (NEW.status = 'PENDING' AND OLD.status IS DISTINCT FROM 'PENDING')
    EXECUTE FUNCTION jobs_notify_requeued();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS jobs_job_notify_requeued ON jobs_job;
DROP TRIGGER IF EXISTS jobs_job_notify_inserted ON jobs_job;
DROP FUNCTION IF EXISTS jobs_notify_requeued();
DROP FUNCTION IF EXISTS jobs_notify_inserted();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("jobs", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
