"""Staff who may only view imports are not shown Run now, Pause or Test source on an
import's page (hunt "surfaces", bug 6): the buttons answered them 403."""

import pytest
from django.contrib.auth.models import Permission

from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db

CHANGE = "/admin/schedules/scheduledimport/{}/change/"
BUTTONS = (">Run now<", ">Pause<", ">Resume<", ">Test source<", ">Accept new host key<")


def staff_who_may(django_user_model, *codenames):
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def test_staff_who_may_only_view_imports_see_none_of_their_buttons(
    client, django_user_model, alice
):
    imp = make_import(alice, SOURCE)
    client.force_login(staff_who_may(django_user_model, "view_scheduledimport"))

    response = client.get(CHANGE.format(imp.pk))

    assert response.status_code == 200
    html = response.content.decode()
    assert not [button for button in BUTTONS if button in html]
    assert "History" in html  # the page's own tools are still there


def test_staff_who_may_change_imports_see_them(client, django_user_model, alice):
    imp = make_import(alice, SOURCE)
    client.force_login(
        staff_who_may(django_user_model, "view_scheduledimport", "change_scheduledimport")
    )

    html = client.get(CHANGE.format(imp.pk)).content.decode()

    assert all(button in html for button in (">Run now<", ">Pause<", ">Test source<"))
