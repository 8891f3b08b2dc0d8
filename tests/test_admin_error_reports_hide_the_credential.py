"""A server error while an import's credential is saved in the admin reports the request's POST
(the error mail to ADMINS, DEBUG's error page) without the credential's secret parts, as
Django's own password forms do. Before, the password and the private key were listed as typed."""

import pytest
from django.views.debug import SafeExceptionReporterFilter

from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_an_error_report_of_the_import_form_hides_the_secret_fields(
    client, django_user_model, alice
):
    # Given an admin on alice's import
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    imp = make_import(alice, SOURCE)

    # When a credential is posted (the form need not be valid: the request is what is reported)
    response = client.post(
        f"/admin/schedules/scheduledimport/{imp.pk}/change/",
        {"credential_kind": "basic", "credential_username": "reader",
         "credential_password": "s3cret-pw", "credential_private_key": "-----BEGIN KEY-----"},
    )  # fmt: skip

    # Then what an error report would list of that request hides both secret fields
    reported = SafeExceptionReporterFilter().get_post_parameters(response.wsgi_request)
    assert reported["credential_password"] == SafeExceptionReporterFilter.cleansed_substitute
    assert reported["credential_private_key"] == SafeExceptionReporterFilter.cleansed_substitute
    assert reported["credential_username"] == "reader"
