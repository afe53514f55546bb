import pytest
from django.urls import reverse

from jobs.models import Job, JobStatus
from jobs.tasks import echo

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(client, make_user):
    client.force_login(make_user("root", roles=("admin",), is_staff=True, is_superuser=True))
    return client


def dead(**fields):
    job = echo.apply_async(**fields)
    error = "Traceback (most recent call last):\n  ...\nValueError: <b>bad</b>"
    Job.objects.filter(pk=job.pk).update(status=JobStatus.DEAD, attempts=3, last_error=error)
    return job


def test_the_job_list_filters_by_status_queue_and_task_and_searches(admin_client_):
    echo.apply_async(queue="mail")
    echo.apply_async(queue="reports")
    dead(queue="mail")
    url = reverse("admin:jobs_job_changelist")
    page = admin_client_.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    for choice in ("?status__exact=DEAD", "?queue=mail", "?task=echo"):
        assert choice in html
    assert admin_client_.get(url, {"status__exact": "DEAD"}).context["cl"].result_count == 1
    assert admin_client_.get(url, {"queue": "reports"}).context["cl"].result_count == 1
    assert admin_client_.get(url, {"q": "mail"}).context["cl"].result_count == 2


def test_bulk_retry_resets_dead_jobs_and_bulk_cancel_stops_pending_ones(admin_client_):
    pending, gone = echo.delay(), dead()
    url = reverse("admin:jobs_job_changelist")
    response = admin_client_.post(url, {"action": "retry_jobs", "_selected_action": [pending.pk, gone.pk]}, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert "1 of 2 jobs retried." in messages
    assert "1 skipped: only DEAD or CANCELLED jobs can be retried." in messages
    gone.refresh_from_db()
    assert (gone.status, gone.attempts) == (JobStatus.PENDING, 0)
    admin_client_.post(url, {"action": "cancel_jobs", "_selected_action": [pending.pk]})
    pending.refresh_from_db()
    assert pending.status == JobStatus.CANCELLED


def test_the_dead_letter_queue_lists_only_dead_jobs_with_their_error(admin_client_):
    echo.delay()
    gone = dead()
    url = reverse("admin:jobs_deadletter_changelist")
    page = admin_client_.get(url)
    assert page.status_code == 200
    assert page.context["cl"].result_count == 1
    assert "ValueError: &lt;b&gt;bad&lt;/b&gt;" in page.content.decode()  # escaped
    detail = admin_client_.get(reverse("admin:jobs_deadletter_change", args=[gone.pk]))
    assert '<pre style="white-space: pre-wrap">Traceback (most recent call last):' in detail.content.decode()
    admin_client_.post(url, {"action": "retry_jobs", "_selected_action": [gone.pk]})
    assert admin_client_.get(url).context["cl"].result_count == 0


def test_jobs_are_not_added_or_edited_by_hand_in_the_admin(admin_client_):
    job = echo.delay()
    assert admin_client_.get(reverse("admin:jobs_job_add")).status_code == 403
    admin_client_.post(reverse("admin:jobs_job_change", args=[job.pk]), {"status": "COMPLETED"})
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
