"""API views: small, every queryset scoped to request.user (staff see all), rules in services."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, connection, transaction
from django.db.models import Prefetch, QuerySet
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common import error_words, streaming
from schedules import (
    check_slots,
    exact_json,
    history,
    host_keys,
    listed_imports,
    listed_runs,
    rows,
    services,
    source_check,
    stats,
)
from schedules.models import Dataset, ImportRun, Record, ScheduledImport, active_run_order

from . import health
from .body_fields import check_body_fields
from .filters import (
    YES_NO_WORDS,
    AllRunsFilter,
    ImportFilter,
    RecordFilter,
    RunFilter,
    check_query_params,
)
from .pagination import (
    DeliveryPagination,
    HistoryPagination,
    ImportPagination,
    RecordCursorPagination,
    RunPagination,
)
from .permissions import OwnerMayChange
from .renderers import ExactJSONRenderer
from .serializers import (
    ActiveRunConflictSerializer,
    DatasetInUseSerializer,
    DatasetSerializer,
    DeliverySerializer,
    HistoryEntrySerializer,
    ImportSerializer,
    MeSerializer,
    RecordSerializer,
    RunDetailSerializer,
    RunSerializer,
    SourceCheckSerializer,
    StatsSerializer,
    columns_read,
)
from .throttles import ManualRunThrottle, SourceCheckThrottle

DRY_RUN_WORDS = YES_NO_WORDS

DRY_RUN_PARAMETER = OpenApiParameter(
    "dry_run",
    OpenApiTypes.BOOL,
    description="true: check the body against its source as `POST /imports/check` does; "
    "nothing is saved",
)


def _versioned(response: Response, imp: ScheduledImport) -> Response:
    response["ETag"] = services.import_version(imp)
    return response


def _version_refused(changed: services.ImportChanged) -> Response:
    return Response({"detail": str(changed)}, status=status.HTTP_412_PRECONDITION_FAILED)


def _dry_run(request: Request) -> bool:
    """`?dry_run=true` on create and update: check the source, save nothing.

    A value it does not know is a 400: `?dry_run=on` saved the import for real while the
    caller believed it only checked it."""
    value = request.query_params.get("dry_run")
    if value is None:
        return False
    if value.strip().lower() not in DRY_RUN_WORDS:
        raise serializers.ValidationError(
            {"dry_run": [f"{value!r} is not one of: {', '.join(DRY_RUN_WORDS)}"]}
        )
    return DRY_RUN_WORDS[value.strip().lower()]


MAX_STATS_DAYS = 366
RUN_LIST_COLUMNS = tuple(columns_read(RunSerializer))


def owned(queryset: QuerySet, request: Request, owner_path: str) -> QuerySet:
    """The part of `queryset` that `request.user` may see: their own rows, or all for staff."""
    if request.user.is_staff:
        return queryset
    return queryset.filter(**{owner_path: request.user})


def import_for(request: Request, pk: int) -> ScheduledImport:
    """An import the user may see, or 404 (another user's id is indistinguishable from none)."""
    found = owned(ScheduledImport.objects.all(), request, "owner").filter(pk=pk).first()
    if found is None:
        raise not_found("import", pk)
    return found


def not_found(noun: str, key: object) -> NotFound:
    """A 404 in the product's words ("import 12 not found"), never a model's class name."""
    return NotFound(f"{noun} {key} not found")


class NamedNotFound:
    """get_object() whose 404 names what was looked for; `noun` says what the view serves."""

    noun: str

    def get_object(self):
        try:
            return super().get_object()
        except Http404:
            raise not_found(
                self.noun, self.kwargs[self.lookup_url_kwarg or self.lookup_field]
            ) from None


def queued_run(enqueue: Callable[[], ImportRun]) -> Response:
    """The answer to a request that queues a run (trigger, retry): 202 with the run, 409 naming
    the run already active, 503 when the broker did not take it."""
    try:
        queued = enqueue()
    except services.RunAlreadyActive as conflict:
        return Response(
            {
                "detail": str(conflict),
                "active_run_id": conflict.run.pk,
                "active_run": RunSerializer(conflict.run).data,
            },
            status=status.HTTP_409_CONFLICT,
        )
    except ScheduledImport.DoesNotExist:
        # Deleted between the request's read of it and the trigger's lock.
        raise NotFound("the import was deleted") from None
    except services.BrokerUnavailable as unavailable:
        retry_after = services.BROKER_RETRY_AFTER_SECONDS
        queue = (
            f"{error_words.QUEUE_FULL} and takes no new run"
            if unavailable.full
            else "the task queue is unavailable"
        )
        return Response(
            {
                "detail": f"{queue.capitalize()}, so no run was queued; "
                f"try again in {retry_after} seconds."
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(retry_after)},
        )
    return Response(RunSerializer(queued).data, status=status.HTTP_202_ACCEPTED)


QUEUED_RUN_RESPONSES = {
    202: RunSerializer,
    409: OpenApiResponse(ActiveRunConflictSerializer, "a run is queued or running"),
    503: OpenApiResponse(description="the task queue is unavailable; see Retry-After"),
    429: OpenApiResponse(description="too many manual runs; see Retry-After"),
}


class PageReadByIds:
    """A list whose page the ORM chooses as ids alone (the scope of get_queryset(), the filters,
    the order, the pagination and its count), and whose rows `read_page` reads in statements
    written once: compiling a wide select with its joins for every page, and making its model
    instances, was most of a list's CPU (issue 15, tests/bench/bench_reads.py)."""

    def read_page(self, ids: list[int]) -> list[Any]:
        raise NotImplementedError

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        chosen = self.filter_queryset(self.get_queryset()).values_list("pk", flat=True)
        ids = self.paginate_queryset(chosen)
        page = self.read_page(list(chosen) if ids is None else ids)
        serializer = self.get_serializer(page, many=True)
        if ids is None:
            return Response(serializer.data)
        return self.get_paginated_response(serializer.data)


class StatsQuery(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=MAX_STATS_DAYS, default=30)


@extend_schema_view(
    create=extend_schema(parameters=[DRY_RUN_PARAMETER]),
    update=extend_schema(parameters=[DRY_RUN_PARAMETER]),
    partial_update=extend_schema(parameters=[DRY_RUN_PARAMETER]),
)
@extend_schema(tags=["imports"])
class ImportViewSet(NamedNotFound, PageReadByIds, viewsets.ModelViewSet):
    """Your scheduled imports: their source, schedule and policies (README, API)."""

    # (A docstring of its own: the schema's description of its operations was NamedNotFound's.)
    noun = "import"
    queryset = ScheduledImport.objects.none()  # for the schema; requests use get_queryset()
    serializer_class = ImportSerializer
    filterset_class = ImportFilter
    pagination_class = ImportPagination
    permission_classes = [IsAuthenticated, OwnerMayChange]
    lookup_value_regex = r"\d+"

    # Query parameters an action reads itself, and whether a detail action pages its answer
    # (filters.allowed_query_params: a 400 names exactly what the action reads).
    extra_query_params: tuple[str, ...] = ()
    paginated_detail = False

    def get_queryset(self) -> QuerySet[ScheduledImport]:
        if self.action == "list":
            # What the list's page is chosen from; its imports are read by list().
            return owned(ScheduledImport.objects.all(), self.request, "owner").order_by("id")
        active = ImportRun.objects.filter(status__in=ImportRun.ACTIVE_STATUSES).order_by(
            *active_run_order()
        )
        queryset = ScheduledImport.objects.select_related("owner", "dataset").prefetch_related(
            Prefetch("runs", queryset=active, to_attr="active_runs")
        )
        return owned(queryset, self.request, "owner").order_by("id")

    def read_page(self, ids: list[int]) -> list[ScheduledImport]:
        # Their fifty-column select with its joins and prefetch, compiled for every page, was
        # more than a third of the request's CPU.
        return listed_imports.page(ids)

    def get_object(self) -> ScheduledImport:
        if self.action != "run":
            return super().get_object()
        # The trigger's read of its import, the one a user waits for: its row alone (the
        # active-run check happens under the import's lock in services.enqueue_run), in a
        # statement written once (rows.get): the queryset's compilation was a sixth of a
        # trigger's CPU. The same checks in the same order: unknown query parameters refused,
        # another user's import not found, staff refused on an import not theirs.
        self.filter_queryset(ScheduledImport.objects.none())
        pk, user = int(self.kwargs["pk"]), self.request.user
        imp = rows.get(ScheduledImport, pk) if pk <= rows.MAX_ID else None
        if imp is None or not (user.is_staff or imp.owner_id == user.pk):
            raise not_found(self.noun, self.kwargs["pk"])
        self.check_object_permissions(self.request, imp)
        return imp

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().destroy(request, *args, **kwargs)
        except services.ImportChanged as changed:
            return _version_refused(changed)

    def perform_destroy(self, instance: ScheduledImport) -> None:
        services.delete_import(instance, if_version=self.request.headers.get("If-Match"))

    # --- check before save -----------------------------------------------------------------

    @extend_schema(
        request=ImportSerializer,
        responses={200: SourceCheckSerializer},
        description="The create body, checked against its source as a run would read it "
        "(private addresses, timeouts, size, columns, key and required columns); nothing is "
        "saved. A worker fetches the file.",
    )
    @action(detail=False, methods=["post"], throttle_classes=[SourceCheckThrottle])
    def check(self, request: Request) -> Response:
        """Check a source before saving: columns, first rows, problems and suggestions."""
        check_query_params(request, set())
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._check(serializer)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Not a list: the filters and pages are not read here, only `dry_run`.
        check_query_params(request, {"dry_run"})
        if not _dry_run(request):
            return super().create(request, *args, **kwargs)
        self._throttled_as_the_check(request)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._check(serializer)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The import, with its version as an ETag: an edit sent with it in If-Match is
        refused (412) once another has changed the import since."""
        imp = self.get_object()
        return _versioned(Response(self.get_serializer(imp).data), imp)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Update reads `dry_run` itself; the lookup's strict query check must allow it.
        self.extra_query_params = ("dry_run",)
        if not _dry_run(request):
            try:
                response = super().update(request, *args, **kwargs)
            except services.ImportChanged as changed:
                return _version_refused(changed)
            return _versioned(response, self._updated)
        self._throttled_as_the_check(request)
        instance = self.get_object()
        serializer = self.get_serializer(
            instance, data=request.data, partial=kwargs.get("partial", False)
        )
        serializer.is_valid(raise_exception=True)
        return self._check(serializer)

    def perform_update(self, serializer: ImportSerializer) -> None:
        super().perform_update(serializer)
        self._updated = serializer.instance

    def _throttled_as_the_check(self, request: Request) -> None:
        """A dry run is the check (a worker fetches the source while a web worker waits): the
        check's throttle holds for it, in the same budget. Unthrottled, one user's dry runs
        could hold every web worker and fill the workers' queue."""
        throttle = SourceCheckThrottle()
        if not throttle.allow_request(request, self):
            self.throttled(request, throttle.wait())

    def _check(self, serializer: ImportSerializer) -> Response:
        try:
            result = source_check.check_unsaved(serializer.preview(), by=self.request.user.pk)
        except check_slots.Busy as busy:
            # At once, not after a wait: the checks in progress hold the threads (check_slots).
            return Response(
                {"detail": f"{busy}."},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(busy.retry_after)},
            )
        return Response(SourceCheckSerializer(asdict(result)).data)

    def _status_change(self, change) -> Response:
        """A pause, resume or cancel; refused (412) when sent with an older If-Match."""
        check_body_fields(self.request.data, ())
        try:
            change(self.get_object(), if_version=self.request.headers.get("If-Match"))
        except services.ImportChanged as changed:
            return _version_refused(changed)
        # Read again: the import read before the change kept its active runs as they were, and
        # a cancel answered that the run it had just ended was still queued.
        imp = self.get_object()
        return _versioned(Response(self.get_serializer(imp).data), imp)

    @extend_schema(
        request=None,
        responses={200: ImportSerializer, 409: OpenApiResponse(description="it is cancelled")},
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        """Pause an active import: beat stops dispatching it until it is resumed. A cancelled
        one is a 409 (resume it instead)."""
        try:
            return self._status_change(services.pause_import)
        except services.StatusNotChanged as refused:
            return Response({"detail": str(refused)}, status=status.HTTP_409_CONFLICT)

    @extend_schema(request=None, responses=ImportSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        """Resume a paused or cancelled import: beat dispatches it again."""
        return self._status_change(services.resume_import)

    @extend_schema(request=None, responses=ImportSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel: no more scheduled runs; queued runs are cancelled (a running one finishes)."""
        return self._status_change(services.cancel_import)

    @extend_schema(
        request=None,
        responses={200: ImportSerializer, 409: OpenApiResponse(description="no new key offered")},
    )
    @action(detail=True, methods=["post"], url_path="accept-host-key")
    def accept_host_key(self, request: Request, pk: str) -> Response:
        """SFTP: trust the new host key the server showed (its fingerprint is
        `offered_host_key_fingerprint`); runs refused since then can run again."""
        check_body_fields(request.data, ())
        try:
            imp = host_keys.accept_offered(self.get_object(), request.user)
        except host_keys.NoOfferedKey as refused:
            return Response({"detail": str(refused)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(imp).data)

    @extend_schema(request=None, responses=QUEUED_RUN_RESPONSES)
    @action(
        detail=True, methods=["post"], filterset_class=None, throttle_classes=[ManualRunThrottle]
    )
    def run(self, request: Request, pk: str) -> Response:
        """Trigger a run now: 202 with the queued run, or 409 naming the active one."""
        check_body_fields(request.data, ())
        imp = self.get_object()
        return queued_run(
            lambda: services.enqueue_run(imp, trigger=ImportRun.Trigger.API, user=request.user)
        )

    @extend_schema(responses=DeliverySerializer(many=True))
    @action(
        detail=True,
        methods=["get"],
        filterset_class=None,
        paginated_detail=True,
        pagination_class=DeliveryPagination,
    )
    def deliveries(self, request: Request, pk: str) -> Response:
        """The import's notifications, newest first, and how each delivery went."""
        log = self.get_object().deliveries.order_by("-created_at", "-id")
        page = self.paginate_queryset(log)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)

    @extend_schema(responses=HistoryEntrySerializer(many=True))
    @action(
        detail=True,
        methods=["get"],
        filterset_class=None,
        paginated_detail=True,
        pagination_class=HistoryPagination,
    )
    def history(self, request: Request, pk: str) -> Response:
        """Who changed what, when, from which surface (api, admin, command): creation, every
        edit with old -> new, pause, resume, cancel, and runs triggered, cancelled or retried;
        newest first."""
        imp = self.get_object()
        page = self.paginate_queryset(history.entries_for(imp))
        entries = [history.describe(entry) for entry in page]
        return self.get_paginated_response(HistoryEntrySerializer(entries, many=True).data)

    @extend_schema(
        parameters=[StatsQuery],
        responses=StatsSerializer,
    )
    @action(
        detail=True,
        methods=["get"],
        filterset_class=None,
        pagination_class=None,
        extra_query_params=("days",),
    )
    def stats(self, request: Request, pk: str) -> Response:
        """Totals per status, success rate, average and p95 duration, rows, per-day series."""
        imp = self.get_object()
        query = StatsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = stats.import_stats(imp, query.validated_data["days"])
        return Response(StatsSerializer(data).data)


@extend_schema(tags=["runs"])
class ImportRunsView(PageReadByIds, generics.ListAPIView):
    """Run history of one import, newest first."""

    queryset = ImportRun.objects.none()  # for the schema; requests use get_queryset()

    serializer_class = RunSerializer
    filterset_class = RunFilter
    pagination_class = RunPagination

    def get_queryset(self) -> QuerySet[ImportRun]:
        # What the page is chosen from (another user's import is a 404 here); its runs are
        # read by read_page().
        imp = import_for(self.request, self.kwargs["pk"])
        return imp.runs.order_by("-queued_at", "-id")

    def read_page(self, ids: list[int]) -> list[ImportRun]:
        return listed_runs.page(ids, RUN_LIST_COLUMNS)


@extend_schema(tags=["runs"])
class RunViewSet(NamedNotFound, PageReadByIds, viewsets.ReadOnlyModelViewSet):
    """The runs of your imports, newest first: each run's outcome, counts and errors."""

    noun = "run"
    queryset = ImportRun.objects.none()  # for the schema; requests use get_queryset()
    filterset_class = AllRunsFilter
    pagination_class = RunPagination
    lookup_value_regex = r"\d+"
    permission_classes = [IsAuthenticated, OwnerMayChange]

    @extend_schema(
        request=None,
        responses={
            200: RunDetailSerializer,
            409: OpenApiResponse(description="the run is over: nothing to cancel"),
        },
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel a queued, running or retrying run. A waiting one ends at once; a running one
        is asked to stop (`cancel_requested_at`) and ends `cancelled` at its next safe point,
        before its merge commits, so the dataset is left as it was."""
        check_body_fields(request.data, ())
        try:
            run = services.cancel_run(self.get_object(), user=request.user)
        except services.RunNotActionable as refused:
            return Response({"detail": str(refused)}, status=status.HTTP_409_CONFLICT)
        return Response(RunDetailSerializer(run, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=QUEUED_RUN_RESPONSES)
    @action(
        detail=True,
        methods=["post"],
        filterset_class=None,
        throttle_classes=[ManualRunThrottle],
    )
    def retry(self, request: Request, pk: str) -> Response:
        """Run a failed or timed-out run's import again now: 202 with the new run (`retry_of`
        names this one); 409 when this run did not fail, was retried already, or another run is
        active."""
        check_body_fields(request.data, ())
        run = self.get_object()
        try:
            return queued_run(lambda: services.retry_run(run, user=request.user))
        except services.RunNotActionable as refused:
            return Response({"detail": str(refused)}, status=status.HTTP_409_CONFLICT)

    def get_queryset(self) -> QuerySet[ImportRun]:
        queryset = ImportRun.objects.all()
        if self.action != "list":
            # A list's page is chosen from the runs alone and read by read_page().
            queryset = queryset.select_related("scheduled_import", "triggered_by")
        return owned(queryset, self.request, "scheduled_import__owner").order_by(
            "-queued_at", "-id"
        )

    def read_page(self, ids: list[int]) -> list[ImportRun]:
        return listed_runs.page(ids, RUN_LIST_COLUMNS)

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer


OWNER_PARAMETER = OpenApiParameter(
    "owner", OpenApiTypes.STR, description="staff only: whose dataset, when names collide"
)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "owner", OpenApiTypes.STR, description="only the datasets of this username"
            )
        ]
    ),
    retrieve=extend_schema(parameters=[OWNER_PARAMETER]),
    destroy=extend_schema(
        parameters=[OWNER_PARAMETER],
        responses={
            204: None,
            409: OpenApiResponse(DatasetInUseSerializer, "imports still write to it"),
        },
    ),
)
@extend_schema(tags=["datasets"])
class DatasetViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Dataset.objects.none()  # for the schema; requests use get_queryset()
    serializer_class = DatasetSerializer
    permission_classes = [IsAuthenticated, OwnerMayChange]
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    extra_query_params = ("owner",)

    def destroy(self, request: Request, name: str) -> Response:
        """Delete the dataset and its records; 409 naming the imports that still write to it."""
        dataset = self.get_object()
        try:
            services.delete_dataset(dataset)
        except services.DatasetInUse as in_use:
            return Response(
                {"detail": str(in_use), "imports": [imp.pk for imp in in_use.imports]},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)

    def get_queryset(self) -> QuerySet[Dataset]:
        queryset = Dataset.objects.select_related("owner").prefetch_related("imports")
        queryset = owned(queryset, self.request, "owner").order_by("name", "id")
        owner = owner_asked(self.request)
        if self.action == "list" and owner is not None:
            # Taken and ignored before: staff asking for one user's datasets got everyone's.
            queryset = queryset.filter(owner__username=owner)
        return queryset

    def get_object(self) -> Dataset:
        dataset = dataset_for(
            self.request, self.kwargs["name"], self.filter_queryset(self.get_queryset())
        )
        self.check_object_permissions(self.request, dataset)
        return dataset


def owner_asked(request: Request) -> str | None:
    """The username `?owner=` names, if given. Given empty (a script's variable left empty), it
    is a 400 as any filter given no value (filters.check_filter_values): a dataset's page
    ignored it and answered the caller's own dataset of that name, the list none."""
    owner = request.query_params.get("owner")
    if owner is None:
        return None
    if not owner.strip():
        raise serializers.ValidationError(
            {"owner": ["has no value: give a username; or leave the parameter out"]}
        )
    if "\x00" in owner:
        raise serializers.ValidationError({"owner": ["must not contain NUL characters"]})
    return owner


def dataset_for(request: Request, name: str, queryset: QuerySet[Dataset]) -> Dataset:
    """The caller's dataset called `name`. Names are unique per owner only, so staff (who see
    everyone's) get their own first, or the one of `?owner=`."""
    matches = queryset.filter(name=name)
    owner = owner_asked(request)
    if owner is not None:
        matches = matches.filter(owner__username=owner)
    elif request.user.is_staff and matches.filter(owner=request.user).exists():
        matches = matches.filter(owner=request.user)
    found = list(matches[:2])
    if len(found) > 1:
        raise serializers.ValidationError(
            {"owner": [f"several users have a dataset {name!r}: say whose with ?owner="]}
        )
    if not found:
        raise not_found("dataset", repr(name))
    return found[0]


@extend_schema(tags=["datasets"], parameters=[OWNER_PARAMETER])
class RecordListView(generics.ListAPIView):
    """The records of one dataset, by cursor (stable and fast on any page)."""

    queryset = Record.objects.none()  # for the schema; requests use get_queryset()

    serializer_class = RecordSerializer
    pagination_class = RecordCursorPagination
    filterset_class = RecordFilter
    renderer_classes = [ExactJSONRenderer]
    extra_query_params = ("owner",)

    def get_queryset(self) -> QuerySet[Record]:
        datasets = owned(Dataset.objects.all(), self.request, "owner")
        self.dataset = dataset_for(self.request, self.kwargs["name"], datasets)
        return self.dataset.records.all()

    @property
    def whole_count(self) -> int | None:
        """The dataset's count of its records when no filter narrows the list (the paginator's
        `count`), else None."""
        if self.request.query_params.keys() & RecordFilter.base_filters:
            return None
        return self.dataset.record_count


@extend_schema(tags=["datasets"], parameters=[OWNER_PARAMETER])
class RecordExportView(RecordListView):
    """The dataset's records as CSV, streamed (any size); the same filters as the records."""

    pagination_class = None

    def perform_content_negotiation(self, request: Request, force: bool = False):
        # The records go out as CSV whatever the Accept header says; errors stay JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR}, filters=True)
    def get(self, request: Request, name: str) -> StreamingHttpResponse:
        records = self.filter_queryset(self.get_queryset())
        # The header's fields are read here first, before the response starts (kept on the
        # dataset; unknown ones read from every record once and kept here, in a short
        # transaction of their own): a statement they cannot end in time (that read of a big
        # dataset under the web's timeout, a table locked by a migration) or a database away
        # is the API's 503 in words. Read inside the stream only, it was gunicorn's bare 500
        # and an empty body (the suite's export, under load). The stream reads them again in
        # its own snapshot, with the records: the first of its statements started here, its
        # transaction stayed open past the view for as long as the response went unread (a
        # test's client never closes one it did not read, and the next test's rows were
        # committed with it).
        services.known_fields(self.dataset.pk)
        response = StreamingHttpResponse(
            streaming.streamed(
                export_rows(records, self.dataset),
                client=request.META.get("gunicorn.socket"),
                what=f"the export of dataset {self.dataset.pk}",
            ),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="{self.dataset.name}.csv"'
        return response


# Records per chunk of an export: about 100 KB of a typical file's lines.
EXPORT_LINES_PER_CHUNK = 1000


class _Echo:
    """A file whose write() returns the line, for csv.writer feeding a streamed response."""

    def write(self, value: str) -> str:
        return value


def export_rows(records: QuerySet[Record], dataset: Dataset) -> Iterator[str]:
    """CSV lines of `records`: a header of every field the dataset holds (the column its
    records are keyed by first, else its imports' key columns, the rest by name), then one
    line per record, read by a server-side cursor so memory stays flat however large the
    dataset.

    The lines go out EXPORT_LINES_PER_CHUNK at a time: one chunk per line was a write to the
    socket and a chunk header per record (47,000 records a second through gunicorn).

    One transaction, REPEATABLE READ, around the whole export: the header and the records are
    read from one snapshot (a merge committing between them could add a field the header
    lacks, its values silently left out), and the cursor streams. Outside a transaction
    Django declares it WITH HOLD, and PostgreSQL then computes the whole result before the
    first record: four million records, seconds with nothing sent, and the web worker was
    killed before its first line (tests/bench/bench_datasets_at_scale.py)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:  # (inside a caller's transaction, a test's, its snapshot is the one)
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        keys = (
            {dataset.key_column}
            if dataset.key_column
            else {imp.key_column for imp in dataset.imports.all()}
        )
        # Read again in this snapshot, with the records it describes; kept by every writer of
        # records with them, else (still unknown) read from them, without keeping them: this
        # transaction lasts the whole export, and would hold the dataset's row that long.
        fields = services.fields_now(dataset.pk)
        header = sorted(fields, key=lambda name: (name not in keys, name))
        writer = csv.writer(_Echo())
        yield writer.writerow(header)
        lines: list[str] = []
        # In the records' own order (by key, their index: RecordCursorPagination).
        for (data,) in records.order_by("key").values_list("data").iterator(chunk_size=2000):
            lines.append(writer.writerow([_cell(data.get(name)) for name in header]))
            if len(lines) == EXPORT_LINES_PER_CHUNK:
                yield "".join(lines)
                lines = []
        if lines:
            yield "".join(lines)


def _cell(value: object) -> str:
    """A stored JSON value as CSV text: null is empty, booleans are true/false as in JSON."""
    if value is None:
        return ""
    if isinstance(value, bool | dict | list):
        return exact_json.dumps(value)
    return str(value)  # (a decimal's digits as stored: Record.data reads them exactly)


@extend_schema(tags=["auth"])
class MeView(generics.RetrieveUpdateAPIView):
    """My account: `GET` it, `PATCH` (or `PUT`) my e-mail (alerts of failing and late imports
    go there) and my notification defaults."""

    serializer_class = MeSerializer
    http_method_names = ["get", "head", "patch", "put", "options"]

    def get_object(self) -> AbstractBaseUser:
        check_query_params(self.request, set())
        return self.request.user


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded", "down"])
    time = serializers.DateTimeField()
    checks = serializers.DictField()


@extend_schema(
    tags=["health"],
    responses={200: HealthSerializer, 503: HealthSerializer},
)
class HealthView(APIView):
    """Database, broker, beat (last tick), workers, late imports and drop folders' processed
    files the retention could not clean. 503 when the database or broker is down; degraded
    (200) when any other check fails.

    Public, for load balancers and monitors: statuses only. A staff token adds the details
    (beat's leader, the workers' names, last tick, latencies, and what could not be
    reached and why).
    """

    permission_classes = [AllowAny]

    def perform_authentication(self, request: Request) -> None:
        """Authenticate only when the details are asked for (`_is_staff`), never refuse."""

    def get(self, request: Request) -> Response:
        check_query_params(request, set())
        body, healthy = health.report()
        body = health.for_caller(body, staff=_is_staff(request))
        return Response(body, status=200 if healthy else 503)


def _is_staff(request: Request) -> bool:
    # A bad token, or a database that is down (the token cannot be looked up), is anonymous
    # here: health must still answer.
    try:
        return bool(request.user and request.user.is_staff)
    except (APIException, DatabaseError):
        return False
