"""The dashboard's tables are written in Python (schedules/dashboard_rows.py) instead of by the
template's `{% for %}` loops: the page stays, byte for byte, what the loops made of the same
rows, on rows of every kind (every phase of a bar, sizes from bytes to gigabytes, an unknown
size, a run not started, every reason for attention, HTML in names) and on empty tables."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.template import engines
from django.template.loader import get_template
from django.test import RequestFactory

from schedules import dashboard
from schedules.models import ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 3, 14, 30, 5, 123456, tzinfo=UTC)

# The loops as templates/dashboard/index.html held them, one per table.
LOOPS = {
    "{{ run_rows }}": """{% for run in runs %}
      <tr data-run-id="{{ run.id }}">
        <td><a href="{{ run.url }}">#{{ run.id }}</a></td>
        <td>{{ run.import }}</td><td>{{ run.owner }}</td><td class="status">{{ run.status }}</td>
        <td><div class="progress{% if run.phase == 'checks' or run.phase == 'merge' %} working{% endif %}" role="progressbar" aria-valuemin="0" aria-valuemax="100"
                 aria-valuenow="{{ run.percent|default_if_none:'' }}">
              <div class="fill" style="width: {{ run.percent|default_if_none:0|stringformat:'s' }}%"></div>
              <span class="phase">{{ run.phase }}</span>
            </div>
            <span class="bytes">{{ run.bytes_read|filesizeformat }}{% if run.bytes_total %} / {{ run.bytes_total|filesizeformat }}{% endif %}</span></td>
        <td class="rows">{{ run.rows_read }}</td>
        <td class="started">{{ run.started_at|moment:"ago" }}</td>
      </tr>
    {% empty %}
      <tr class="empty"><td colspan="7">No run in progress.</td></tr>
    {% endfor %}""",  # noqa: E501
    "{{ upcoming_rows }}": """{% for imp in upcoming %}
      <tr data-import-id="{{ imp.id }}">
        <td>{{ imp.next_run_at|moment:"in" }}</td>
        <td><a href="{{ imp.url }}">{{ imp.name }}</a></td>
        <td>{{ imp.owner }}</td><td>{{ imp.schedule }}</td>
      </tr>
    {% empty %}
      <tr class="empty"><td colspan="4">No run is scheduled.</td></tr>
    {% endfor %}""",
    "{{ attention_rows }}": """{% for imp in attention %}
      <tr data-import-id="{{ imp.id }}">
        <td><a href="{{ imp.url }}">{{ imp.name }}</a></td>
        <td>{{ imp.owner }}</td><td class="reason">{{ imp.reason }}</td>
        <td>{{ imp.consecutive_failures }}</td><td>{{ imp.last_run_at|moment:"ago" }}</td>
      </tr>
    {% empty %}
      <tr class="empty"><td colspan="5">Nothing needs attention.</td></tr>
    {% endfor %}""",
}


def page_through_the_loops(request) -> bytes:
    """The page as the template with its loops wrote it, from the data the view shows."""
    source = get_template("dashboard/index.html").template.source
    for rows, loop in LOOPS.items():
        assert source.count(rows) == 1, rows
        source = source.replace(rows, loop)
    template = engines["django"].from_string(source)
    return template.render(dashboard.page_data(), request).encode()


def page_as_served(client) -> bytes:
    response = client.get("/dashboard/")
    assert response.status_code == 200
    return response.content


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("sam", password="x", is_staff=True)


@pytest.fixture
def rows_of_every_kind(django_user_model):
    odd = django_user_model.objects.create_user("o'brien & <co>", password="x")
    now = NOW  # the tests run at NOW (time_machine): what is late is late then, whatever the day
    feed = make_import(odd, SOURCE, name="<b>\"feed\"</b> & 'co'", dataset="feed")
    berlin = make_import(
        odd,
        SOURCE,
        name="berlin nightly",
        dataset="berlin",
        schedule_type="cron",
        cron_expression="30 2 * * 1-5",
        timezone="Europe/Berlin",
    )
    tokyo = make_import(
        odd,
        SOURCE,
        name="tokyo",
        dataset="tokyo",
        schedule_type="cron",
        cron_expression="@hourly",
        timezone="Asia/Tokyo",
    )
    minutely = make_import(odd, SOURCE, name="minutely", dataset="m", interval_seconds=60)
    daily = make_import(odd, SOURCE, name="daily", dataset="d", interval_seconds=86400)
    weekly = make_import(
        odd,
        SOURCE,
        name="weekly",
        dataset="w",
        schedule_type="cron",
        cron_expression="0 0 * * 0",
        timezone="America/New_York",
    )
    progress = [
        ("running", "download", 250, 1000, 12),
        ("running", "checks", 5 * 1024**3, None, 1_234_567),
        ("running", "merge", 3 * 1024**2 + 17, 3 * 1024**2 + 17, 99_999),
        ("running", "", 0, 0, 0),
        ("retrying", "download", 1, 3, 0),
        ("queued", "", 0, None, 0),
    ]
    for n, (status, phase, read, total, rows) in enumerate(progress):
        make_run(
            (feed, berlin, tokyo, minutely, daily, weekly)[n],
            status,
            phase=phase,
            bytes_read=read,
            bytes_total=total,
            rows_read=rows,
            attempts=n,
            queued_at=now - timedelta(seconds=n),
            started_at=None if status == "queued" else now - timedelta(minutes=n, microseconds=n),
        )
    ScheduledImport.objects.filter(pk=feed.pk).update(
        last_run_status="failed", consecutive_failures=1234, last_run_at=now
    )
    ScheduledImport.objects.filter(pk=berlin.pk).update(
        last_run_status="partial", consecutive_failures=0, last_run_at=None
    )
    ScheduledImport.objects.filter(pk=tokyo.pk).update(
        last_run_status="timed_out",
        consecutive_failures=2,
        last_run_at=now - timedelta(days=3),
        late_since=now - timedelta(hours=5),
        missed_ticks=5,
    )
    ScheduledImport.objects.filter(pk=minutely.pk).update(next_run_at=now - timedelta(hours=1))


@time_machine.travel(NOW, tick=False)
def test_the_page_is_what_the_templates_loops_wrote_for_rows_of_every_kind(
    client, staff, rows_of_every_kind
):
    # Given runs in progress, imports needing attention for every reason, and next runs
    client.force_login(staff)
    served = page_as_served(client)

    # When the page is written through the template's loops from the same data
    request = RequestFactory().get("/dashboard/")
    request.user = staff
    before = page_through_the_loops(request)

    # Then it is the same page, byte for byte, and it does list them all
    assert served == before
    html = served.decode()
    assert html.count("<tr data-run-id=") == 6
    assert html.count('class="reason"') == 4 and "&lt;b&gt;&quot;feed&quot;" in html
    assert "No run is scheduled." not in html


@time_machine.travel(NOW, tick=False)
def test_the_page_is_what_the_templates_loops_wrote_for_empty_tables(client, staff):
    # Given nothing runs, nothing is scheduled and nothing needs attention
    client.force_login(staff)

    # When the page is served, and written through the loops
    served = page_as_served(client)
    request = RequestFactory().get("/dashboard/")
    request.user = staff

    # Then both say so, the same way
    assert served == page_through_the_loops(request)
    assert b"No run in progress." in served and b"Nothing needs attention." in served
