"""The emulator's records (companies, users, jobs, runs) and a run's lifecycle.

A run is one record from executeJob on: its state in getActiveJobs and its
log in getJobLogs are both computed from the time elapsed since it started
(on the state's clock), so they always agree and need no thread. The log
exists from the run's start (a Begin… log type, partial counts, no endDate)
and becomes final when the run ends, as the reference's getJobLogs example
shows.

Records produce plain dicts holding every field any API version knows (both
``role`` and ``defaultRole``, ``originalJobName``, ``taskProgressArray``,
every job-detail element...): the reply serializer keeps only what the
request's namespace declares.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

from .tables import JOB_SUB_TYPES, JOB_TYPES

# Fractions of a run's duration: New during the first tenth; Stopping lasts a
# tenth; a finished run stays visible as Done for a quarter (at least 0.2 s).
NEW_FRACTION = 0.1
STOP_FRACTION = 0.1
DONE_FRACTION = 0.25
DONE_MIN_SECONDS = 0.2


# ------------------------------------------------------------ companies, users
@dataclass
class Company:
    handle: str
    name: str
    root_path: str = ""
    expires: datetime | None = None

    def wire(self) -> dict:
        return {"companyHandle": self.handle, "name": self.name,
                "rootPath": self.root_path, "expires": self.expires}


@dataclass
class Membership:
    company: str
    role: str
    active: bool = True


@dataclass
class User:
    handle: str
    email: str
    password: str
    first_name: str
    last_name: str
    default_role: str
    memberships: dict[str, Membership] = field(default_factory=dict)
    is_valid: bool = True
    password_expires: datetime | None = None

    def wire(self) -> dict:
        # ``role`` before 6.0, ``defaultRole`` from 6.0: the same value; from
        # 2016-01-14-beta only ``isIpsAdmin`` (the type is then per company).
        return {"userHandle": self.handle, "firstName": self.first_name,
                "lastName": self.last_name, "email": self.email,
                "role": self.default_role, "defaultRole": self.default_role,
                "isIpsAdmin": self.default_role == "IpsAdmin",
                "isValid": self.is_valid, "passwordExpires": self.password_expires}


# ---------------------------------------------------------------------- jobs
@dataclass
class Job:
    company: str
    handle: str
    name: str
    type: str
    submit_user_email: str = ""
    locale: str = "en_US"
    description: str = ""
    exec_schedule: str = ""
    next_fire_time: datetime | None = None
    time_zone: str = ""
    trigger_state: str = "Normal"
    outcome: str = "success"
    files: int = 5
    assets: list[str] = field(default_factory=list)
    #: Values of the job-detail element (WSDL element names), over the defaults.
    detail: dict = field(default_factory=dict)

    @property
    def kind(self):
        return JOB_TYPES[self.type]

    def asset_names(self) -> list[str]:
        names = list(self.assets)
        while len(names) < self.files:
            names.append(f"asset-{len(names) + 1:03d}.{self.kind.extension}")
        return names[: self.files]

    def detail_element(self, root_path: str = "") -> tuple[str, dict] | None:
        """(element name, content) of the job-detail element; None for Cleanup."""
        element = self.kind.detail
        if element is None:
            return None
        content: dict = {"emailSetting": "None"}
        if element == "imageServingPublishJob":
            content["publishType"] = "Full"
        elif element == "uploadDirectoryJob":
            # Booleans: so typed before 4.0; from then on strings, where "true" still reads.
            content.update(destFolder=root_path, includeSubfolders=True,
                           overwrite=True, readyForPublish=True,
                           serverDir=f"/ips/upload/{self.company}/")
        elif element == "uploadUrlsJob":
            urls = [{"sourceUrl": f"https://assets.example.com/{quote(a)}",
                     "destPath": f"{root_path}{a}"} for a in self.asset_names()]
            content.update(destFolder=root_path, overwrite=True, readyForPublish=True,
                           urlArray=urls)
        content.update(self.detail)
        if element == "uploadUrlsJob":
            content.setdefault("numUrls", len(content.get("urlArray") or ()))
        return element, content

    def wire(self, root_path: str = "") -> dict:
        out = {"companyHandle": self.company, "jobHandle": self.handle,
               "name": self.name, "originalName": self.name, "type": self.type,
               "submitUserEmail": self.submit_user_email, "locale": self.locale,
               "description": self.description, "execSchedule": self.exec_schedule,
               "nextFireTime": self.next_fire_time, "timeZone": self.time_zone,
               "triggerState": self.trigger_state}
        detail = self.detail_element(root_path)
        if detail is not None:
            out[detail[0]] = detail[1]
        return out

    def job_sub_type(self) -> str | None:
        """JobLog/jobSubType: only image serving publish jobs have one."""
        if self.type != "ImageServingPublish":
            return None
        detail = self.detail_element()
        return JOB_SUB_TYPES.get(detail[1].get("publishType"), "full")


# ---------------------------------------------------------------------- logs
@dataclass
class JobLog:
    """A run's log as it stands at one moment (``end`` None: not over yet)."""

    company: str
    handle: str
    job_name: str
    original_job_name: str
    scheduled_handle: str
    submit_user_email: str
    log_type: str
    job_sub_type: str | None
    start: datetime
    end: datetime | None
    description: str
    counts: dict[str, int]
    fatal: bool
    details: list[dict]

    @property
    def final(self) -> bool:
        return self.end is not None

    def wire(self, details: list[dict] | None = None, total: int | None = None) -> dict:
        c = self.counts
        out = {"companyHandle": self.company, "jobHandle": self.handle,
               "jobName": self.job_name, "originalJobName": self.original_job_name,
               "submitUserEmail": self.submit_user_email, "logType": self.log_type,
               "jobSubType": self.job_sub_type, "startDate": self.start,
               "endDate": self.end, "description": self.description,
               "fileSuccessCount": c["success"], "fileErrorCount": c["error"],
               "fileWarningCount": c["warning"], "fileDuplicateCount": 0,
               "fileUpdateCount": 0, "totalFileCount": c["total"],
               "transferSuccessCount": c["success"], "transferErrorCount": c["error"],
               "transferWarningCount": c["warning"], "fatalError": self.fatal,
               "detailTotalRows": len(self.details) if total is None else total}
        if details is not None:
            out["detailArray"] = [
                {**{k: d[k] for k in ("logMessage", "logType", "assetName", "assetType",
                                      "assetHandle", "auxArray")}, "dateCreated": d["time"]}
                for d in details]
        return out


# ---------------------------------------------------------------------- runs
@dataclass
class Run:
    """One run of a job, from executeJob on. Times are wall datetimes on the
    state's timeline; ``history`` runs were over before the emulator started."""

    handle: str
    name: str
    job: Job  # a snapshot taken when the run started
    submit_user_email: str
    start: datetime
    duration: float
    stopped_after: float | None = None  # seconds after start
    stopped_by: str | None = None
    history: bool = False

    # ---------------------------------------------------------- timeline
    def elapsed(self, now: datetime) -> float:
        if self.history:
            return float("inf")
        return max(0.0, (now - self.start).total_seconds())

    @property
    def finish_after(self) -> float:
        """Seconds from start to the end of the run."""
        if self.stopped_after is not None:
            return min(self.stopped_after + STOP_FRACTION * self.duration, self.duration)
        return self.duration

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.finish_after)

    def finished(self, now: datetime) -> bool:
        return self.elapsed(now) >= self.finish_after

    def listed(self, now: datetime) -> bool:
        """Still in getActiveJobs (running, or Done for a little while)."""
        linger = max(DONE_FRACTION * self.duration, DONE_MIN_SECONDS)
        return not self.history and self.elapsed(now) < self.finish_after + linger

    def progress(self, e: float) -> int:
        """0..100 at ``e`` seconds after start (frozen when stopped)."""
        if self.stopped_after is not None:
            e = min(e, self.stopped_after)
        if self.duration <= 0 or e >= self.duration:
            return 100
        if e < NEW_FRACTION * self.duration:
            return 0
        return max(1, min(99, int(100 * e / self.duration)))

    def state(self, e: float) -> str:
        if e >= self.finish_after:
            return "Done"
        if self.stopped_after is not None:
            return "Stopping"
        if e < NEW_FRACTION * self.duration:
            return "New"
        return "Running"

    def processed(self, e: float) -> int:
        """Files processed so far (none for a fatal run)."""
        if self.job.outcome == "fatal":
            return 0
        return self.job.files * self.progress(e) // 100 if self.job.files else 0

    def _at(self, seconds: float) -> datetime:
        return self.start + timedelta(seconds=seconds)

    # ------------------------------------------------------ active job
    def message(self, e: float) -> str:
        state, n = self.state(e), self.job.files
        if state == "New":
            return "Waiting to start"
        if state == "Running":
            return f"Processing file {min(n, self.processed(e) + 1)} of {n}"
        if state == "Stopping":
            return f"Stopping (requested by {self.stopped_by})"
        if self.stopped_after is not None:
            return "Stopped"
        return "Failed" if self.job.outcome == "fatal" else "Completed"

    def active_job(self, now: datetime, server_name: str, root_path: str = "") -> dict:
        e = self.elapsed(now)
        job, n = self.job, self.job.files
        state, progress, message = self.state(e), self.progress(e), self.message(e)
        updated = self._at(min(e, self.finish_after))
        out = {
            "companyHandle": job.company, "jobHandle": self.handle, "name": self.name,
            "originalName": job.name, "type": job.type, "state": state,
            "submitUserEmail": self.submit_user_email, "locale": job.locale,
            "description": job.description, "serverName": server_name,
            "startDate": self.start, "totalSize": str(n * 1_048_576),
            "progress": progress, "progressMessage": message, "lastProgressUpdate": updated,
        }
        if job.kind.tasks:
            out["taskProgressArray"] = [self._task(e, updated)]
        detail = job.detail_element(root_path)
        if detail is not None:
            out[detail[0]] = detail[1]
        return out

    def _task(self, e: float, updated: datetime) -> dict:
        n, state = self.job.files, self.state(e)
        done = self.processed(e)
        processing = 1 if state == "Running" and done < n and self.job.outcome != "fatal" else 0
        if state == "Done":
            task_state = "Failed" if self.job.outcome == "fatal" else "Done"
        else:
            task_state = {"New": "New", "Running": "Processing", "Stopping": "Stopping"}[state]
        items = []
        if processing:
            asset = self.job.asset_names()[done]
            start_item = self.duration * done / n
            item_progress = min(1.0, max(0.0, (e - start_item) / (self.duration / n)))
            items.append({"itemName": asset, "progress": round(item_progress, 3),
                          "progressMessage": f"Processing '{asset}'", "lastProgressUpdate": updated})
        return {"taskType": self.job.kind.family, "numProcessed": done,
                "numProcessing": processing, "numPending": n - done - processing,
                "progress": self.progress(e) / 100, "progressMessage": self.message(e),
                "lastProgressUpdate": updated, "taskItemProgressArray": items,
                "taskState": task_state}

    # ------------------------------------------------------------- log
    def log(self, now: datetime, root_path: str = "", server_name: str = "") -> JobLog:
        """The run's log as it stands at ``now``. Its first detail rows are
        those of the reference's example: Begin…, OriginalJobName, JobClient."""
        job = self.job
        kind = job.kind
        family = kind.family
        e = self.elapsed(now)
        final = e >= self.finish_after
        assets = job.asset_names()
        n = len(assets)
        stopped = self.stopped_after is not None
        fatal = job.outcome == "fatal"
        bad = max(1, n // 3) if job.outcome in ("warnings", "errors") else 0
        details: list[dict] = []

        def add(at: float, message, log_type, asset=None, aux=None):
            details.append({
                "time": self._at(at), "seq": len(details), "logMessage": message, "logType": log_type,
                "assetName": asset, "assetType": kind.asset_type if asset else None,
                "assetHandle": f"a|{job.company}|{zlib.crc32(f'{job.handle}{asset}'.encode())}"
                if asset else None,
                "auxArray": aux})

        add(0.0, f"Job '{job.name}' started by {self.submit_user_email}", f"Begin{family}")
        add(0.0, job.name, "OriginalJobName")
        if server_name:
            add(0.0, server_name, "JobClient")
        if final or self.state(e) != "New":
            add(NEW_FRACTION * self.duration, str(n), "TotalFileCount")
        counts = {"success": 0, "warning": 0, "error": 0, "total": n if final else 0}
        for i, asset in enumerate(assets[: self.processed(e)]):
            at = min(self.duration * (i + 1) / n, self.finish_after)
            if i >= n - bad and job.outcome == "errors":
                counts["error"] += 1
                row = (f"Could not process '{asset}': unsupported file format", f"{family}Error",
                       "The file format is not supported")
            elif i >= n - bad and job.outcome == "warnings":
                counts["warning"] += 1
                row = (f"Processed '{asset}' with warnings: color profile replaced",
                       f"{family}Warning", "Embedded color profile replaced by sRGB")
            else:
                counts["success"] += 1
                row = (f"Processed '{asset}'", f"{family}Success", f"Stored as {root_path}{asset}")
            add(at, row[0], row[1], asset,
                [{"logMessage": row[2], "logType": row[1], "dateCreated": self._at(at)}])
        end = None
        if not final:
            log_type, description = f"Begin{family}", job.description
        else:
            end = self.end
            if fatal:
                add(self.finish_after, "Fatal error: the storage volume is not reachable; job aborted",
                    "FatalError")
                log_type, description = "FatalError", "Job failed with a fatal error"
            elif stopped:
                log_type, description = f"End{family}", f"Stopped by {self.stopped_by}"
            else:
                log_type = {"success": f"{family}Success", "warnings": f"{family}Warning",
                            "errors": f"{family}Error"}[job.outcome]
                description = job.description
            if stopped:
                add(self.finish_after, f"Job stopped by {self.stopped_by}", f"End{family}")
            else:
                add(self.finish_after,
                    f"Job finished: {counts['success']} succeeded, {counts['warning']} "
                    f"with warnings, {counts['error']} failed", f"End{family}")
        return JobLog(
            company=job.company, handle=self.handle, job_name=self.name,
            original_job_name=job.name, scheduled_handle=job.handle,
            submit_user_email=self.submit_user_email, log_type=log_type,
            job_sub_type=job.job_sub_type(), start=self.start, end=end,
            description=description, counts=counts, fatal=fatal and final, details=details)


def run_name(job: Job, start: datetime, taken) -> tuple[str, str]:
    """(handle, name) of a new run: ``<company>||<job name>_<yyyy-mm-dd-hh:mm:ss>``,
    with ``-2``, ``-3``... when that is taken."""
    base = f"{job.name}_{start:%Y-%m-%d-%H:%M:%S}"
    name, n = base, 1
    while f"{job.company}||{name}" in taken:
        n += 1
        name = f"{base}-{n}"
    return f"{job.company}||{name}", name
