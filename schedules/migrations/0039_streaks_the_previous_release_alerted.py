"""A failure streak under way at the upgrade that the previous release alerted on is marked as
alerted, so it is not alerted a second time (upgrade hunt).

Releases before 92f909c alerted when `consecutive_failures` reached `alert_after_failures`
exactly and marked nothing on the run; this one alerts once a streak, at or past the threshold,
when no run of the streak carries `error_details.alerted` (schedules.alerts._alerted_in_streak).
So every import failing past its threshold at the upgrade mailed its owner again, e-mail and
webhook, at its first failure on the new release.

For each import with 0 < alert_after_failures <= consecutive_failures, the run where the old
rule fired gets the mark alerts.on_run_finished writes (`alerted: true` and the threshold it
met, `alert_threshold`): the streak's `alert_after_failures`-th failed run, counted in the
window `_alerted_in_streak` reads (the import's last `consecutive_failures` failed and
timed-out runs, newest first by finished_at then id); or, when retention has deleted that run,
the oldest of the streak still kept. Left alone:
- a streak with a run marked already (this release, or 92f909c's, alerted it);
- a streak whose run at that place was written by this release (it has `error_details.streak`,
  cdd04fe): this release decided that run itself, and an unmarked streak past its threshold is
  one whose threshold was lowered below it, due its alert at the next failure.
A threshold changed under the old release, so that its rule never met the count, is not known
here: such a streak is taken as alerted (one alert fewer, never one more).

One statement, each import past its threshold reading only its own failed runs. Measured on
PostgreSQL 15, 10,000 imports with 300 runs each (3M runs): `migrate` took 6.0 s with a third
of them in a streak of up to 300 failures (3,300 marked), 8.7 s with every run failed (10,000
marked), 3.4 s when nothing was left to mark (the command's own start).
"""

from django.db import migrations

MARK_ALERTED_STREAKS = """
WITH win AS (
    SELECT i.id AS import_id, i.alert_after_failures AS threshold,
           i.consecutive_failures AS failures, w.id AS run_id, w.n, w.details
    FROM schedules_scheduledimport i
    CROSS JOIN LATERAL (
        SELECT r.id,
               CASE WHEN jsonb_typeof(r.error_details) = 'object' THEN r.error_details
                    ELSE '{}'::jsonb END AS details,
               row_number() OVER (ORDER BY r.finished_at DESC, r.id DESC) AS n
        FROM schedules_importrun r
        WHERE r.scheduled_import_id = i.id AND r.status IN ('failed', 'timed_out')
        ORDER BY r.finished_at DESC, r.id DESC
        LIMIT i.consecutive_failures
    ) w
    WHERE i.alert_after_failures > 0 AND i.alert_after_failures <= i.consecutive_failures
),
unmarked AS (
    SELECT import_id, threshold, LEAST(failures - threshold + 1, count(*)) AS at_n
    FROM win
    GROUP BY import_id, threshold, failures
    HAVING NOT bool_or(details ? 'alerted')
),
fired AS (
    SELECT win.run_id, win.details, unmarked.threshold
    FROM win JOIN unmarked ON unmarked.import_id = win.import_id AND win.n = unmarked.at_n
    WHERE NOT win.details ? 'streak'
)
UPDATE schedules_importrun r
SET error_details = fired.details
    || jsonb_build_object('alerted', true, 'alert_threshold', fired.threshold)
FROM fired
WHERE r.id = fired.run_id
"""


def mark_streaks_alerted_before(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(MARK_ALERTED_STREAKS)
        marked = cursor.rowcount
    if marked:
        # The migrate command's own output, as 0021's.
        print(f"\n    failure streaks the previous release alerted on: {marked} marked as alerted")


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0038_history_pages_walk_an_index"),
    ]

    operations = [
        # Backwards nothing, and nothing is lost: the releases before this one read the mark as
        # this one does (0038's) or not at all (before 92f909c), and a mark cannot be told
        # from one a run wrote itself; forwards again, a streak already marked is left alone.
        migrations.RunPython(mark_streaks_alerted_before, migrations.RunPython.noop),
    ]
