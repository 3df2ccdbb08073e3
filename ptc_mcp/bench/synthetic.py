"""Realistic synthetic tool catalogs of any size, for tests and ``ptc-mcp bench catalog``.

``synthetic_tools(n)`` always starts with the hand-written core servers (expenses, github, calendar, time, …,
written the way real MCP servers describe their tools), then fills up with generated domain servers
(inventory, billing, kubernetes, …: an entity-by-verb grid each). The same ``n`` and ``seed`` always give the
same tools. ``SEARCH_QUERIES`` are natural-language questions with the core tool that answers each.
"""

from __future__ import annotations

import random
from typing import Any

import mcp_types

from ptc_mcp.catalog.model import DownstreamTool

__all__ = ["SEARCH_QUERIES", "core_tools", "synthetic_tools"]

_RO = {"readOnlyHint": True}
_DESTRUCTIVE = {"readOnlyHint": False, "destructiveHint": True}
_IDEMPOTENT = {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True}


def _s(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = required
    return schema


def _tool(
    name: str,
    description: str,
    properties: dict[str, Any],
    required: list[str] | None = None,
    *,
    output: dict[str, Any] | None = None,
    annotations: dict[str, Any] | None = None,
    title: str | None = None,
) -> mcp_types.Tool:
    data: dict[str, Any] = {"name": name, "description": description, "inputSchema": _obj(properties, required)}
    if output is not None:
        data["outputSchema"] = output
    if annotations is not None or title is not None:
        data["annotations"] = {**(annotations or {}), **({"title": title} if title else {})}
    return mcp_types.Tool.model_validate(data)


_ROWS = _obj(
    {
        "rows": {
            "type": "array",
            "items": _obj({"date": _s("ISO date"), "category": _s("Category"), "amount": {"type": "number"}}),
        },
        "total": {"type": "number"},
    },
    ["rows", "total"],
)

# Hand-written core servers. The order matters: synthetic_tools(10) takes the first tool of each server in turn.
_CORE: list[tuple[str, list[mcp_types.Tool]]] = [
    (
        "expenses",
        [
            _tool(
                "get_expenses",
                "Return the expense line items one employee filed in a quarter, with the quarter's total spend. "
                "Amounts are in USD.",
                {
                    "employee_id": _s("Employee id, e.g. 'E7'"),
                    "quarter": {"type": "string", "enum": ["Q1", "Q2", "Q3", "Q4"], "description": "Fiscal quarter"},
                    "category": _s("Only this category (travel, meals, lodging, equipment)"),
                },
                ["employee_id", "quarter"],
                output=_ROWS,
                annotations=_RO,
            ),
            _tool(
                "list_employees",
                "List employees with their id, name, department and manager.",
                {"department": _s("Only this department")},
                annotations=_RO,
            ),
            _tool(
                "get_budget",
                "Get the annual budget of a department and how much of it has been spent so far.",
                {"department": _s("Department name"), "year": {"type": "integer", "minimum": 2000}},
                ["department"],
                annotations=_RO,
            ),
            _tool(
                "submit_expense_report",
                "Submit a new expense report for approval.",
                {
                    "employee_id": _s("Employee id"),
                    "items": {
                        "type": "array",
                        "items": _obj(
                            {"date": _s("ISO date"), "amount": {"type": "number"}, "category": _s("Category")},
                            ["date", "amount"],
                        ),
                    },
                    "note": _s("Free text note for the approver"),
                },
                ["employee_id", "items"],
            ),
        ],
    ),
    (
        "time",
        [
            _tool(
                "get_current_time",
                "Get the current time in a specific timezone.",
                {"timezone": _s("IANA timezone name (e.g., 'America/New_York', 'Asia/Tokyo').")},
                ["timezone"],
                annotations=_RO,
            ),
            _tool(
                "convert_time",
                "Convert a time of day between timezones.",
                {
                    "source_timezone": _s("Source IANA timezone name"),
                    "time": _s("Time to convert in 24-hour format (HH:MM)"),
                    "target_timezone": _s("Target IANA timezone name"),
                },
                ["source_timezone", "time", "target_timezone"],
                annotations=_RO,
            ),
        ],
    ),
    (
        "github",
        [
            _tool(
                "search_issues",
                "Search issues and pull requests across repositories using GitHub search syntax.",
                {
                    "query": _s("Search text, e.g. 'login bug'"),
                    "state": {"type": "string", "enum": ["open", "closed", "all"], "default": "open"},
                    "per_page": {"type": "integer", "default": 30, "maximum": 100},
                },
                ["query"],
                annotations=_RO,
            ),
            _tool(
                "create_issue",
                "Open a new issue in a GitHub repository, to report a bug or request a feature.",
                {
                    "owner": _s("Repository owner"),
                    "repo": _s("Repository name"),
                    "title": _s("Issue title"),
                    "body": _s("Issue body (Markdown)"),
                    "labels": {"type": "array", "items": {"type": "string"}},
                },
                ["owner", "repo", "title"],
            ),
            _tool(
                "merge_pull_request",
                "Merge a pull request into its base branch.",
                {
                    "owner": _s("Repository owner"),
                    "repo": _s("Repository name"),
                    "pull_number": {"type": "integer"},
                    "merge_method": {"type": "string", "enum": ["merge", "squash", "rebase"], "default": "merge"},
                },
                ["owner", "repo", "pull_number"],
                annotations=_DESTRUCTIVE,
            ),
            _tool(
                "list_commits",
                "List commits of a branch, newest first.",
                {
                    "owner": _s("Repository owner"),
                    "repo": _s("Repository name"),
                    "sha": _s("Branch name or commit SHA to start from (default branch if omitted)"),
                    "since": _s("Only commits after this ISO 8601 date", format="date-time"),
                },
                ["owner", "repo"],
                annotations=_RO,
            ),
        ],
    ),
    (
        "weather",
        [
            _tool(
                "get_forecast",
                "Daily weather forecast for a location: temperature, chance of rain and wind, up to 7 days ahead.",
                {
                    "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                    "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": 3},
                },
                ["latitude", "longitude"],
                annotations=_RO,
                title="Weather forecast",
            ),
            _tool(
                "get_alerts",
                "Active severe weather alerts (storms, floods, heat) for a US state.",
                {"state": _s("Two-letter US state code, e.g. CA")},
                ["state"],
                annotations=_RO,
            ),
        ],
    ),
    (
        "calendar",
        [
            _tool(
                "list_events",
                "List calendar events between two dates.",
                {
                    "start": _s("Start (ISO 8601)", format="date-time"),
                    "end": _s("End (ISO 8601)", format="date-time"),
                    "calendar_id": _s("Calendar id", default="primary"),
                },
                ["start", "end"],
                annotations=_RO,
            ),
            _tool(
                "create_event",
                "Schedule a meeting or event and invite attendees.",
                {
                    "title": _s("Event title"),
                    "start": _s("Start (ISO 8601)", format="date-time"),
                    "end": _s("End (ISO 8601)", format="date-time"),
                    "attendees": {"type": "array", "items": {"type": "string", "format": "email"}},
                },
                ["title", "start", "end"],
            ),
            _tool(
                "find_free_slots",
                "Find times when all the given people are available, for a meeting of a given length.",
                {
                    "attendees": {"type": "array", "items": {"type": "string"}},
                    "duration_minutes": {"type": "integer", "minimum": 5},
                    "within_days": {"type": "integer", "default": 7},
                },
                ["attendees", "duration_minutes"],
                annotations=_RO,
            ),
        ],
    ),
    (
        "slack",
        [
            _tool(
                "post_message",
                "Post a message to a Slack channel or thread.",
                {"channel": _s("Channel name or id"), "text": _s("Message text"), "thread_ts": _s("Reply in thread")},
                ["channel", "text"],
            ),
            _tool(
                "search_messages",
                "Search Slack messages by keyword.",
                {"query": _s("Search text"), "channel": _s("Only this channel"), "limit": {"type": "integer"}},
                ["query"],
                annotations=_RO,
            ),
        ],
    ),
    (
        "file-system",
        [
            _tool(
                "read_file",
                "Read the complete contents of a text file.",
                {"path": _s("Path of the file")},
                ["path"],
                annotations=_RO,
            ),
            _tool(
                "write_file",
                "Create or overwrite a file with new content.",
                {"path": _s("Path of the file"), "content": _s("New content")},
                ["path", "content"],
                annotations=_DESTRUCTIVE,
            ),
            _tool(
                "list_directory",
                "List the files and subdirectories in a directory (folder).",
                {"path": _s("Directory path")},
                ["path"],
                annotations=_RO,
            ),
        ],
    ),
    (
        "postgres",
        [
            _tool(
                "query",
                "Run a read-only SQL query against the database and return the rows.",
                {"sql": _s("The SQL statement"), "params": {"type": "array", "items": {}}},
                ["sql"],
                annotations=_RO,
            ),
            _tool(
                "describe_table",
                "Show the columns of a table with their data types.",
                {"table": _s("Table name"), "schema": _s("Schema name", default="public")},
                ["table"],
                annotations=_RO,
            ),
        ],
    ),
    (
        "email",
        [
            _tool(
                "send_email",
                "Send an email message.",
                {
                    "to": {"type": "array", "items": {"type": "string", "format": "email"}},
                    "subject": _s("Subject line"),
                    "body": _s("Plain-text body"),
                    "cc": {"type": "array", "items": {"type": "string"}},
                },
                ["to", "subject", "body"],
            ),
            _tool(
                "search_inbox",
                "Search the mailbox for messages matching a query.",
                {"query": _s("Search text"), "unread_only": {"type": "boolean", "default": False}},
                ["query"],
                annotations=_RO,
            ),
        ],
    ),
    (
        "sales-crm",
        [
            _tool(
                "get_customer",
                "Look up a customer account by id: contact details, owner and lifetime value.",
                {"customer_id": _s("Customer id")},
                ["customer_id"],
                annotations=_RO,
            ),
            _tool(
                "list_deals",
                "List sales opportunities (deals) in the pipeline, filtered by stage or owner.",
                {
                    "stage": {
                        "type": "string",
                        "enum": ["lead", "qualified", "proposal", "negotiation", "won", "lost"],
                    },
                    "owner": _s("Sales rep email"),
                },
                annotations=_RO,
            ),
        ],
    ),
    (
        "translate",
        [
            _tool(
                "translate_text",
                "Translate text into another language.",
                {
                    "text": _s("Text to translate"),
                    "target_language": _s("Target language code, e.g. 'de'"),
                    "source_language": _s("Source language code; detected if omitted"),
                },
                ["text", "target_language"],
                annotations=_RO,
            ),
        ],
    ),
    (
        "maps",
        [
            _tool(
                "geocode",
                "Turn a street address into latitude and longitude coordinates.",
                {"address": _s("Street address or place name")},
                ["address"],
                annotations=_RO,
            ),
            _tool(
                "get_directions",
                "Route and travel time between two places.",
                {
                    "origin": _s("Start address"),
                    "destination": _s("End address"),
                    "mode": {"type": "string", "enum": ["driving", "walking", "bicycling", "transit"]},
                },
                ["origin", "destination"],
                annotations=_RO,
            ),
        ],
    ),
    (
        "json",
        [
            _tool(
                "query_json",
                "Evaluate a JMESPath expression against a JSON document.",
                {"document": _s("The JSON text"), "expression": _s("JMESPath expression")},
                ["document", "expression"],
                annotations=_RO,
            ),
        ],
    ),
]

SEARCH_QUERIES: list[tuple[str, str]] = [
    ("how much did an employee spend last quarter", "expenses.get_expenses"),
    ("what time is it in Tokyo right now", "time.get_current_time"),
    ("convert 3pm New York time to London time", "time.convert_time"),
    ("will it rain tomorrow in Paris", "weather.get_forecast"),
    ("open a bug report on a repository", "github.create_issue"),
    ("merge a pull request", "github.merge_pull_request"),
    ("find open issues about the login bug", "github.search_issues"),
    ("send a message to a slack channel", "slack.post_message"),
    ("schedule a meeting with attendees", "calendar.create_event"),
    ("when is everyone available for a 30 minute meeting", "calendar.find_free_slots"),
    ("read the contents of a file", "file-system.read_file"),
    ("what files are in this folder", "file-system.list_directory"),
    ("run a SQL query on the database", "postgres.query"),
    ("what columns does the orders table have", "postgres.describe_table"),
    ("email the report to my manager", "email.send_email"),
    ("remaining budget of the marketing department", "expenses.get_budget"),
    ("translate this paragraph into German", "translate.translate_text"),
    ("driving route from the office to the airport", "maps.get_directions"),
    ("coordinates of a street address", "maps.geocode"),
    ("which deals are in negotiation", "sales-crm.list_deals"),
    ("look up a customer account", "sales-crm.get_customer"),
    ("recent commits on the main branch", "github.list_commits"),
    ("unread mail about invoices in my inbox", "email.search_inbox"),
    ("storm warnings in California", "weather.get_alerts"),
    ("who works in the sales department", "expenses.list_employees"),
    ("jmespath over a json document", "json.query_json"),
    ("issue a refund for a charge", "payments.create_refund"),
    ("how many support tickets are pending", "support-desk.count_support_tickets"),
    ("export all invoices to a csv file", "billing.export_invoices"),
    ("remove a DNS record", "dns.delete_record"),
    ("which pods are running in the cluster", "kubernetes.list_pods"),
    ("look for a wiki page about onboarding", "wiki.search_wiki_pages"),
    ("tear down the staging deployment", "kubernetes.delete_deployment"),
    ("show me the CI pipelines", "ci.list_pipelines"),
    ("grab the build artifact with id 991", "ci.get_artifact"),
    ("open a new incident for the checkout outage", "monitoring.create_incident"),
    ("which TLS certificates do we have", "dns.list_tls_certificates"),
    ("store a new object in the bucket", "storage.create_object"),
    ("print a shipping label for the parcel", "shipping.create_label"),
    ("request time off next week", "hr.create_leave_request"),
    ("look at a job candidate's profile", "hr.get_candidate"),
    ("what dashboards exist in monitoring", "monitoring.list_dashboards"),
    ("count the IoT devices that are offline", "iot.count_devices"),
    ("enroll a student in a course", "lms.create_enrollment"),
    ("find contracts that mention indemnification", "legal.search_contracts"),
    ("raise a purchase order for 20 monitors", "procurement.create_purchase_order"),
    ("which vendors do we buy from", "procurement.list_vendors"),
    ("messages sitting in the queue", "queue.list_queued_messages"),
    ("book a room for two nights", "bookings.create_reservation"),
    ("publish a job opening for a backend engineer", "recruiting.create_job_posting"),
    ("list the answers people gave to the survey", "survey.list_responses"),
    ("how many people mentioned our brand", "social.count_mentions"),
    ("jot down a note in my notebook", "notes.create_note"),
    ("which sites link back to us", "seo.list_backlinks"),
    ("bring back the wiki page that was archived", "wiki.restore_page"),
    ("archive the old summer ad campaign", "ads.archive_campaign"),
    ("read a secret from the vault", "secrets.get_secret"),
    ("add a peer to the VPN", "vpn.create_peer"),
    ("turn on a feature flag for beta users", "feature-flags.update_flag"),
    ("change the dinner menu", "restaurants.update_menu"),
    ("how many videos have we uploaded", "video.count_videos"),
    ("which samples did the lab receive", "lab.list_samples"),
    ("set up a funnel for the signup flow", "analytics.create_funnel"),
    ("purge the CDN cache for the homepage", "cdn.create_purge"),
    ("what's the weather going to be like this weekend in Berlin", "weather.get_forecast"),
    ("ping the #deploys channel that the release is out", "slack.post_message"),
    ("put a 1:1 with Dana on my calendar for Thursday at 10", "calendar.create_event"),
    ("save this text to notes.txt", "file-system.write_file"),
    ("show me what is inside config.yaml", "file-system.read_file"),
    ("what's the local time in Sydney", "time.get_current_time"),
    ("if it's 9am in Berlin what time is it in San Francisco", "time.convert_time"),
    ("latitude and longitude for 10 Downing Street", "maps.geocode"),
    ("how do I walk from the station to the museum", "maps.get_directions"),
    ("cancel the hotel reservation for guest 42", "bookings.delete_reservation"),
    ("list every vehicle in the fleet", "fleet.list_vehicles"),
    ("how many laptops do we have", "assets.count_laptops"),
    ("download all the support tickets as csv", "support-desk.export_support_tickets"),
    ("file an expense report for my trip to Denver", "expenses.submit_expense_report"),
    ("what did the team commit to the repo since Monday", "github.list_commits"),
    ("post a tweet about the launch", "social.create_post"),
    ("create a new playlist for the road trip", "music.create_playlist"),
    ("fetch the details of invoice INV-2041", "billing.get_invoice"),
    ("delete the stale cache key session:123", "cache.delete_key"),
    ("how many open alert rules are there", "monitoring.count_alert_rules"),
    ("search the inbox for the contract from Acme", "email.search_inbox"),
    ("in German please: thank you for your order", "translate.translate_text"),
    ("show the schema of the users table", "postgres.describe_table"),
    ("look up the shipment with tracking number 1Z999", "shipping.get_shipment"),
    ("which feature flags exist", "feature-flags.list_feature_flags"),
]

# Generated domains: "server | how descriptions name the system", then indented lines "entity/plural, ...".
_DOMAIN_TABLE = """
inventory | the inventory system
    item/items, warehouse/warehouses, stock_level/stock levels, supplier/suppliers, transfer/transfers
billing | the billing platform
    invoice/invoices, payment/payments, credit_note/credit notes, subscription/subscriptions, tax_rate/tax rates
hr | the HR system
    candidate/candidates, leave_request/leave requests, review/performance reviews,
    position/open positions, payslip/payslips
kubernetes | the Kubernetes cluster
    pod/pods, deployment/deployments, service/services, config_map/config maps, namespace/namespaces
monitoring | the monitoring stack
    alert_rule/alert rules, dashboard/dashboards, incident/incidents, metric/metrics, silence/silences
ci | the CI service
    pipeline/pipelines, job/jobs, artifact/build artifacts, runner/runners, schedule/pipeline schedules
dns | the DNS provider
    zone/zones, record/DNS records, certificate/TLS certificates, redirect/redirects, health_check/health checks
storage | object storage
    bucket/buckets, object/objects, lifecycle_rule/lifecycle rules, access_key/access keys, snapshot/snapshots
payments | the payment processor
    charge/charges, refund/refunds, payout/payouts, dispute/disputes, card/saved cards
shipping | the shipping service
    shipment/shipments, label/shipping labels, carrier/carriers, rate/shipping rates, return/returns
support-desk | the help desk
    ticket/support tickets, macro/macros, agent/agents,
    satisfaction_rating/satisfaction ratings, sla_policy/SLA policies
wiki | the team wiki
    page/wiki pages, space/spaces, attachment/attachments, comment/comments, template/page templates
analytics | product analytics
    report/reports, funnel/funnels, cohort/cohorts, segment/segments, event_definition/event definitions
ads | the ads platform
    campaign/ad campaigns, ad_group/ad groups, creative/creatives, audience/audiences, budget_rule/budget rules
music | the music library
    playlist/playlists, track/tracks, album/albums, artist/artists, queue_entry/playback queue entries
photos | the photo library
    album/photo albums, photo/photos, face_group/face groups, share_link/share links, memory/memories
iot | the IoT hub
    device/devices, sensor_reading/sensor readings, firmware/firmware images,
    automation/automations, gateway/gateways
fleet | fleet management
    vehicle/vehicles, driver/drivers, trip/trips, fuel_log/fuel logs, maintenance_task/maintenance tasks
lms | the learning platform
    course/courses, enrollment/enrollments, quiz/quizzes, assignment/assignments, grade/grades
legal | contract management
    contract/contracts, clause/clauses, matter/legal matters, signature_request/signature requests, policy/policies
procurement | procurement
    purchase_order/purchase orders, vendor/vendors, quote/quotes, approval/approvals, catalog_item/catalog items
assets | IT asset management
    laptop/laptops, license/software licenses, assignment/asset assignments, repair/repairs, location/locations
backup | the backup service
    backup_job/backup jobs, restore_point/restore points, vault/vaults,
    retention_policy/retention policies, report/backup reports
secrets | the secrets vault
    secret/secrets, version/secret versions, rotation/rotation schedules,
    access_policy/access policies, audit_entry/audit entries
feature-flags | feature flags
    flag/feature flags, environment/environments, rollout/rollouts,
    experiment/experiments, target_rule/targeting rules
logging | the log platform
    log_query/saved log queries, stream/log streams, parser/log parsers,
    archive/log archives, pipeline/log pipelines
queue | the message broker
    queue/queues, message/queued messages, consumer/consumers, dead_letter/dead letters, topic/topics
bookings | the booking engine
    reservation/reservations, room/rooms, guest/guests, rate_plan/rate plans, availability/availability windows
restaurants | restaurant operations
    menu/menus, order/food orders, table/tables, review/restaurant reviews, delivery/deliveries
recruiting | the applicant tracking system
    job_posting/job postings, application/applications, interview/interviews, offer/offers, referral/referrals
survey | the survey tool
    survey/surveys, question/questions, response/responses, distribution/distributions, panel/panels
social | social media
    post/social posts, mention/mentions, follower/followers, schedule_slot/scheduled posts, hashtag/hashtags
notes | the notes app
    note/notes, notebook/notebooks, tag/tags, reminder/reminders, checklist/checklists
cdn | the CDN
    distribution/CDN distributions, cache_rule/cache rules, purge/cache purges,
    origin/origins, waf_rule/firewall rules
video | the video platform
    video/videos, channel/video channels, caption/captions, live_stream/live streams, chapter/chapters
seo | SEO tooling
    keyword/tracked keywords, backlink/backlinks, audit/site audits, sitemap/sitemaps, ranking/rankings
lab | the lab information system
    sample/samples, experiment/lab experiments, instrument/instruments, protocol/lab protocols, result/lab results
vpn | the VPN
    tunnel/tunnels, peer/peers, gateway/VPN gateways, route/routes, session/VPN sessions
cache | the cache service
    key/cache keys, cluster/cache clusters, eviction_policy/eviction policies,
    stat/cache statistics, snapshot/cache snapshots
events | event management
    ticket_type/ticket types, attendee/event attendees, session/event sessions, speaker/speakers, venue/venues
"""


def _domains() -> list[tuple[str, str, list[tuple[str, str]]]]:
    domains: list[tuple[str, str, list[tuple[str, str]]]] = []
    for line in _DOMAIN_TABLE.strip().splitlines():
        if not line.startswith(" "):
            server, system = (part.strip() for part in line.split("|"))
            domains.append((server, system, []))
            continue
        for item in line.split(","):
            if item.strip():
                entity, plural = item.strip().split("/", 1)
                domains[-1][2].append((entity, plural))
    return domains


_VERBS = ["list", "get", "create", "update", "delete", "search", "archive", "export", "count", "restore"]


def _generated_tool(
    rng: random.Random, server: str, entity: str, plural: str, system: str, verb: str
) -> mcp_types.Tool:
    id_arg = f"{entity}_id"
    status = {"type": "string", "enum": rng.sample(["active", "pending", "archived", "failed", "draft", "closed"], 3)}
    page = {"type": "integer", "minimum": 1, "maximum": 500, "default": rng.choice([20, 50, 100])}
    when = rng.choice(["", " Results are sorted by most recent first.", " Use the cursor to page through results."])
    listing = _obj(
        {"items": {"type": "array", "items": {"type": "object"}}, "next_cursor": {"type": ["string", "null"]}},
        ["items"],
    )
    name = (
        f"{verb}_{entity}"
        if verb in ("get", "create", "update", "delete", "archive", "restore")
        else (f"{verb}_{plural.lower().replace(' ', '_')}")
    )
    name = name.replace("-", "_")
    if verb == "list":
        return _tool(
            name,
            f"List {plural} in {system}, optionally filtered by status.{when}",
            {"status": status, "limit": page, "cursor": _s("Cursor from a previous page")},
            output=listing,
            annotations=_RO,
        )
    if verb == "get":
        return _tool(
            name,
            f"Get one of the {plural} in {system} by id, with all its fields.",
            {id_arg: _s(f"Id of the {entity.replace('_', ' ')}")},
            [id_arg],
            output=_obj({"id": _s("Id"), "name": _s("Name"), "created_at": _s("ISO 8601")}),
            annotations=_RO,
        )
    if verb == "create":
        return _tool(
            name,
            f"Create a new {entity.replace('_', ' ')} in {system}.",
            {
                "name": _s("Display name"),
                "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            ["name"],
        )
    if verb == "update":
        return _tool(
            name,
            f"Update fields of an existing {entity.replace('_', ' ')} in {system}.",
            {id_arg: _s("Id"), "changes": {"type": "object", "description": "Fields to change"}},
            [id_arg, "changes"],
            annotations=_IDEMPOTENT,
        )
    if verb == "delete":
        return _tool(
            name,
            f"Permanently delete a {entity.replace('_', ' ')} from {system}.",
            {id_arg: _s("Id"), "force": {"type": "boolean", "default": False}},
            [id_arg],
            annotations=_DESTRUCTIVE,
        )
    if verb == "search":
        return _tool(
            name,
            f"Full-text search over {plural} in {system}.{when}",
            {"query": _s("Search text"), "limit": page},
            ["query"],
            output=listing,
            annotations=_RO,
        )
    if verb == "archive":
        return _tool(
            name,
            f"Archive a {entity.replace('_', ' ')} so it no longer shows in {system} listings.",
            {id_arg: _s("Id")},
            [id_arg],
            annotations=_IDEMPOTENT,
        )
    if verb == "export":
        return _tool(
            name,
            f"Export {plural} from {system} as a CSV or JSON file.",
            {
                "format": {"type": "string", "enum": ["csv", "json"], "default": "csv"},
                "since": _s("Only records changed after this date", format="date"),
            },
            annotations=_RO,
        )
    if verb == "count":
        return _tool(
            name,
            f"Count {plural} in {system} grouped by status.",
            {"status": status},
            output=_obj({"counts": {"type": "object", "additionalProperties": {"type": "integer"}}}),
            annotations=_RO,
        )
    return _tool(name, f"Restore an archived {entity.replace('_', ' ')} in {system}.", {id_arg: _s("Id")}, [id_arg])


def core_tools() -> list[DownstreamTool]:
    """The hand-written core tools, server by server."""
    return [DownstreamTool(server, tool) for server, tools in _CORE for tool in tools]


def synthetic_tools(count: int, *, seed: int = 0) -> list[DownstreamTool]:
    """``count`` tools: core tools first (one per server in turn), then generated domain servers."""
    result: list[DownstreamTool] = []
    columns = [[DownstreamTool(server, tool) for tool in tools] for server, tools in _CORE]
    for row in range(max(len(c) for c in columns)):
        for column in columns:
            if row < len(column):
                result.append(column[row])
    rng = random.Random(seed)
    generated: list[DownstreamTool] = []
    domains = _domains()
    for server, system, entities in domains:
        for entity, plural in entities:
            for verb in _VERBS:
                generated.append(DownstreamTool(server, _generated_tool(rng, server, entity, plural, system, verb)))
    # Spread generated tools over many servers: take entity by entity across domains, not domain by domain.
    per_domain = len(_VERBS) * 5
    interleaved = [generated[d * per_domain + i] for i in range(per_domain) for d in range(len(domains))]
    result.extend(interleaved)
    if count > len(result):
        raise ValueError(f"synthetic_tools can make at most {len(result)} tools")
    return result[:count]
