"""A queue of deliveries (a drop folder's glob with move_processed) is its owner's only one on
that glob: each run of a queue takes the oldest delivery waiting and files it away, so two
queues of one glob each took the deliveries the other had not taken yet.

Regression (drops hunt, bug 2): two such imports were saved, and each dataset got about half
the files, with no word of it. Now the second is refused when saved, on its source (the API's
400, the admin's form error; schedules.validation.validate_one_queue_per_source). An import
without move_processed takes the newest file and leaves it: it shares a glob with anything.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from schedules import services
from schedules.models import ScheduledImport
from tests.api_support import API, client_for, import_body
from tests.drop_support import put
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now
from tests.test_admin_imports import CHANGELIST, form_data

pytestmark = pytest.mark.django_db(transaction=True)

SPLITS = "already takes the deliveries of"


def test_the_api_refuses_a_second_queue_of_the_same_glob_on_its_source(alice, drop):
    # Given a queue of alice's deliveries
    make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    api = client_for(alice)

    # When she creates another import of the same glob with move_processed, spelled otherwise
    answer = api.post(
        f"{API}/imports",
        import_body(
            name="copy", dataset="copy", source_url=f"file://localhost{drop}/./products_*.csv",
            move_processed=True,
        ),
        format="json",
    )  # fmt: skip

    # Then it is refused on its source, in words naming the queue it would split
    assert answer.status_code == 400, answer.json()
    message = " ".join(answer.json()["errors"]["source_url"])
    assert "your import 'products' (id" in message and SPLITS in message, message
    assert f"{drop}/products_*.csv" in message and "about half" in message, message
    assert ScheduledImport.objects.filter(owner=alice).count() == 1

    # But one that reads the newest file without filing it away is saved
    latest = api.post(
        f"{API}/imports",
        import_body(name="latest", dataset="latest", source_url=f"file://{drop}/products_*.csv"),
        format="json",
    )
    assert latest.status_code == 201, latest.json()


def test_a_queue_moved_onto_another_ones_glob_is_refused_in_the_admin(client, alice, drop):
    client.force_login(alice.__class__.objects.create_superuser("root", "root@x.org", "x"))
    make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    other = make_import(
        alice, f"file://{drop}/orders_*.csv", name="orders", dataset="orders", move_processed=True
    )

    refused = client.post(
        f"{CHANGELIST}{other.pk}/change/",
        form_data(other, source_url=f"file://{drop}/products_*.csv", move_processed="on"),
    )

    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors
    assert SPLITS in str(errors["source_url"]), errors
    other.refresh_from_db()
    assert other.source_url.endswith("/orders_*.csv")


def test_turning_move_processed_on_is_refused_too_and_a_paused_queue_counts(alice, drop):
    # Given a paused queue (a resume would start it again) and an import of its glob that
    # reads the newest file
    queue = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    services.pause_import(queue)
    latest = make_import(alice, f"file://{drop}/products_*.csv", name="latest", dataset="l")

    # When move_processed is turned on for the latter, then it is refused, saying why
    with pytest.raises(ValidationError) as refused:
        services.update_import(latest, move_processed=True)

    assert SPLITS in str(refused.value.message_dict["source_url"])
    assert "paused: once resumed" in str(refused.value.message_dict["source_url"])


def test_two_queues_saved_before_the_rule_stay_editable_and_other_globs_are_allowed(
    alice, bob, drop, settings
):
    # Given two queues of one glob saved before the rule (the second moved there directly)
    first = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    second = make_import(
        alice, f"file://{drop}/orders_*.csv", name="orders", dataset="orders", move_processed=True
    )
    ScheduledImport.objects.filter(pk=second.pk).update(source_url=first.source_url)
    second = ScheduledImport.objects.get(pk=second.pk)

    # Then an edit that leaves the source as it is is saved
    services.update_import(second, description="split with products: being mended")

    # And globs no file matches with it, other folders' files, and another owner's queue are
    # allowed
    make_import(alice, f"file://{drop}/products_*.tsv", name="p1", dataset="p1",
                move_processed=True)  # fmt: skip
    make_import(alice, f"file://{drop}/products_[!0-9]*.csv", name="p2", dataset="p2",
                move_processed=False)  # fmt: skip
    (drop.parent / "bob").mkdir()
    make_import(bob, f"file://{drop.parent}/bob/products_*.csv", move_processed=True)


@pytest.mark.parametrize(
    ("theirs", "mine", "shared"),
    [
        ("products_*.csv", "*.csv", "products_.csv"),
        ("*.csv", "products_1*.csv", "products_1.csv"),
        ("products_[0-9].csv", "products_?.csv", "products_0.csv"),
        ("daily.csv", "*.csv", "daily.csv"),
    ],
)
def test_a_queue_whose_glob_matches_another_queues_files_is_refused(
    alice, drop, theirs, mine, shared
):
    # Two queues of one folder whose globs differ but match the same files each took about
    # half of them, as two queues of one glob did (carried from the drops hunt)
    make_import(alice, f"file://{drop}/{theirs}", move_processed=True)

    with pytest.raises(ValidationError) as refused:
        make_import(alice, f"file://{drop}/{mine}", name="copy", dataset="copy",
                    move_processed=True)  # fmt: skip

    message = " ".join(refused.value.message_dict["source_url"])
    assert f"takes the deliveries of {drop}/{theirs}, and a delivery such as {shared!r}" in (
        message
    ), message
    assert f"matches {mine} too" in message and "about half" in message, message


def test_globs_share_a_name_only_when_one_matches_both():
    from common.globs import a_name_of_both, matches

    for first, second in [
        ("*.csv", "*.tsv"),
        ("products_[0-9]*", "products_[!0-9]*"),
        ("*", ".*"),  # a hidden file is no delivery of a glob without the dot
        ("*a" * 60, "*b" * 60),
    ]:
        assert a_name_of_both(first, second) is None, (first, second)
    for first, second in [("*", "*"), (".*", ".x*"), ("*a*b*c*", "*c*b*a*"), ("[]]x", "]x")]:
        name = a_name_of_both(first, second)
        assert name and matches(name, first) and matches(name, second), (first, second, name)


def test_another_users_queue_counts_where_both_read_the_folder(alice, bob, drop, settings):
    # On a shared installation bob's queue of the glob alice's queue drains was saved, and the
    # two split the deliveries between their datasets (review)
    settings.IMPORT_DROP_DIRS_SHARED = True
    shared = drop.parent
    make_import(alice, f"file://{shared}/orders_*.csv", move_processed=True)

    answer = client_for(bob).post(
        f"{API}/imports",
        import_body(name="orders", dataset="orders", source_url=f"file://{shared}/orders_*.csv",
                    move_processed=True),
        format="json",
    )  # fmt: skip

    # Refused without naming alice's import to bob
    assert answer.status_code == 400, answer.json()
    message = " ".join(answer.json()["errors"]["source_url"])
    assert message.startswith("another user's import already takes the deliveries of"), message
    assert "orders" not in message.split("takes")[0]


def test_a_staff_users_queue_in_a_users_folder_counts_both_ways(alice, drop, django_user_model):
    # A staff user reads every folder: his queue of a user's glob split her deliveries too
    staff = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    make_import(staff, f"file://{drop}/orders_*.csv", name="ops copy", move_processed=True)

    with pytest.raises(ValidationError) as refused:
        make_import(alice, f"file://{drop}/orders_*.csv", name="mine", move_processed=True)
    assert "another user's import already takes" in str(refused.value.message_dict)

    ScheduledImport.objects.filter(owner=staff).delete()
    make_import(alice, f"file://{drop}/orders_*.csv", name="mine", move_processed=True)
    with pytest.raises(ValidationError) as refused:
        make_import(staff, f"file://{drop}/*.csv", name="ops copy", move_processed=True)
    assert "alice's import 'mine' (id" in str(refused.value.message_dict)


def test_the_check_before_save_says_so_too(alice, drop):
    put(drop / "products_1.csv", PRODUCTS_CSV)
    make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)

    answer = client_for(alice).post(
        f"{API}/imports/check",
        import_body(name="copy", dataset="copy", source_url=f"file://{drop}/products_*.csv",
                    move_processed=True),
        format="json",
    )  # fmt: skip

    assert answer.status_code == 400, answer.json()
    assert SPLITS in " ".join(answer.json()["errors"]["source_url"])


def test_a_queue_refused_leaves_the_first_one_its_deliveries(alice, drop):
    put(drop / "products_1.csv", PRODUCTS_CSV)
    queue = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    with pytest.raises(ValidationError):
        make_import(alice, f"file://{drop}/products_*.csv", name="copy", dataset="copy",
                    move_processed=True)  # fmt: skip

    assert run_now(queue).status == "succeeded"
    assert (drop / "processed" / "products_1.csv").exists()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("p" * 252 + ".csv", "a file name is at most 255 bytes"),
        ("p" * 252 + "*.csv", "no file can match the pattern: the names it matches are 256"),
        ("*[ab]" * 126 + "x.csv", "the pattern is at most 255 characters, sets [...] and stars"),
        ("[" + "ab" * 600 + "]*.csv", "a pattern is at most 1020 bytes"),
    ],
)
def test_a_name_or_a_pattern_no_file_name_can_match_is_refused(alice, drop, name, words):
    # No file has a name past 255 bytes, and comparing two long patterns took seconds per
    # pair of queues, under the folder's lock, at each save in the folder (review)
    with pytest.raises(ValidationError) as refused:
        make_import(alice, f"file://{drop}/{name}", move_processed=True)

    assert words in str(refused.value.message_dict["source_url"])


def test_a_long_pattern_of_short_names_is_taken(alice, drop):
    # Regression (review): patterns were bounded by their bytes, as names are: a
    # case-insensitive pattern of a 64-letter name, past 255 bytes, was refused at save, and
    # at every run of an import saved with it before
    name = "quarterlyconsolidatedfinancialreportofthesubsidiariesineuropeandasia"[:64]
    (drop / f"{name}.csv").write_text("sku\n1\n")
    pattern = "".join(f"[{c.upper()}{c}]" for c in name) + ".csv"
    assert len(pattern.encode()) > 255

    imp = make_import(alice, f"file://{drop}/{pattern}", move_processed=True)

    assert run_now(imp).status == "succeeded"
    make_import(alice, f"file://{drop}/" + "*[ab]" * 60 + "x.csv", name="b", dataset="b",
                move_processed=True)  # fmt: skip
